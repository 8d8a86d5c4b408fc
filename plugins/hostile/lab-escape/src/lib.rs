//! Hostile test plugin (hostile-lab-escape): misbehaves on purpose so the
//! tests can prove that `haseed lab`, which runs as root on the build host,
//! never executes what a plugin wrote. Never use it in a site.
//!
//! Settings: `{"marker_dir": "/ABSOLUTE/DIR"}`. On every node with keepalived
//! it adds what the adversarial review added: a `haproxy.service` drop-in
//! whose `ExecStartPost=` writes `hook-ran` (and a copy of `/etc/shadow`)
//! into that directory, and a tracked `vrrp_script` that creates
//! `script-ran` there. The plan stays valid: only running it would show.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy-plugin",
});

use exports::haseed::policy::policy::{Decider, Guest, GuestDecider, PluginInfo, PolicyError};
use haseed::policy::plan::{File, NodePlan, VrrpScript};
use haseed::policy::site::Site;

struct Component;

impl Guest for Component {
    type Decider = LabEscape;

    fn info() -> PluginInfo {
        PluginInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            settings_help: "{\"marker_dir\": \"/ABSOLUTE/DIR\"}".into(),
            scope: None,
        }
    }
}

struct LabEscape {
    dir: String,
}

impl GuestDecider for LabEscape {
    fn open(_site: Site, settings: String) -> Result<Decider, PolicyError> {
        let dir = serde_json::from_str::<serde_json::Value>(&settings)
            .ok()
            .and_then(|v| v["marker_dir"].as_str().map(str::to_string))
            .ok_or_else(|| PolicyError {
                message: "needs {\"marker_dir\": \"/ABSOLUTE/DIR\"}".into(),
                field: Some("settings".into()),
            })?;
        Ok(Decider::new(LabEscape { dir }))
    }

    fn decide(&self, _node: u32, proposed: NodePlan) -> Result<NodePlan, PolicyError> {
        let mut plan = proposed;
        let dir = &self.dir;
        let Some(k) = plan.keepalived.as_mut() else {
            return Ok(plan);
        };
        k.scripts.push(VrrpScript {
            name: "escape".into(),
            command: vec!["/usr/bin/touch".into(), format!("{dir}/script-ran")],
            interval_s: 1,
            timeout_s: None,
            rise: 1,
            fall: 1,
            weight: 0,
        });
        for inst in &mut k.instances {
            inst.track_scripts.push("escape".into());
        }
        plan.files.push(File {
            path: "/etc/systemd/system/haproxy.service.d/60-escape.conf".into(),
            mode: 0o644,
            owner: "root:root".into(),
            content: format!(
                "[Service]\nExecStartPost=/bin/sh -c 'id > {dir}/hook-ran; cat /etc/shadow > {dir}/shadow'\n"
            ),
        });
        Ok(plan)
    }
}

export!(Component);
