//! The default policy's settings: the inventory's `[default_policy]` table,
//! handed over as a JSON object.

use serde::Deserialize;

/// Shown by `haseed` as the plugin's settings help.
pub const HELP: &str = "JSON object (inventory table [default_policy]), all keys optional: \
\"check_script\": \"pgrep\" (default: /usr/bin/pgrep -x haproxy) or \"systemctl\" \
(/usr/bin/systemctl is-active --quiet haproxy), how keepalived checks that haproxy runs; \
\"failover\": true (default) or false, event-driven failover (haproxy.service and \
keepalived.service drop-ins, a keepalived track file written by haproxy's start/stop hooks, an \
HTTP check of haproxy's monitor-uri, gratuitous ARP refresh; see the module docs of failover.rs); \
\"advert_int_ms\": VRRP advert interval in ms (default 100 with failover, else 1000; whole seconds up to 255000 use VRRPv2, \
anything else must be 10..40950 in steps of 10 and uses VRRPv3); \
\"priority\": keepalived priority of every VIP holder, 1..254 (default 254 with failover, else 100; a VIP's preferred \
master gets 50 more, at most 254).";

/// How keepalived's `chk_haproxy` script checks haproxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckScript {
    /// `pgrep -x haproxy`: a cheap process check. The default, because
    /// `systemctl is-active` was seen to flap on slow nodes.
    #[default]
    Pgrep,
    /// `systemctl is-active --quiet haproxy`, as in the reference cluster.
    Systemctl,
}

impl CheckScript {
    /// The script's command line: absolute program path, then its arguments.
    pub fn command(self) -> Vec<String> {
        let words: &[&str] = match self {
            CheckScript::Pgrep => &["/usr/bin/pgrep", "-x", "haproxy"],
            CheckScript::Systemctl => &["/usr/bin/systemctl", "is-active", "--quiet", "haproxy"],
        };
        words.iter().map(|w| w.to_string()).collect()
    }
}

/// Every key is optional; an unknown key is an error (a typo must not be
/// silently ignored).
#[derive(Debug)]
pub struct Settings {
    pub check_script: CheckScript,
    pub advert_int_ms: u32,
    pub priority: u8,
    /// Event-driven failover (`failover.rs`).
    pub failover: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            check_script: CheckScript::Pgrep,
            advert_int_ms: 1000,
            priority: 100,
            failover: true,
        }
    }
}

/// The accepted keys, for error messages.
const KEYS: &str = "check_script, advert_int_ms, priority, failover";

impl Settings {
    /// Parses and checks the settings. The host passes "{}" when the inventory
    /// has none; an empty string is taken the same way. Every error starts
    /// with the key it is about.
    pub fn parse(json: &str) -> Result<Settings, String> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(table) = value else {
            return Err("must be a JSON object".into());
        };
        let mut settings = Settings::default();
        let (mut advert, mut priority) = (None, None);
        for (key, value) in table {
            match key.as_str() {
                "check_script" => settings.check_script = field(&key, value)?,
                "advert_int_ms" => advert = Some(field(&key, value)?),
                "priority" => priority = Some(field(&key, value)?),
                "failover" => settings.failover = field(&key, value)?,
                _ => return Err(format!("unknown key {key:?} (expected one of {KEYS})")),
            }
        }
        // With failover, VRRPv3 0.1 s adverts and priority 254: after a FAULT
        // advert the peer waits only the skew time (256 - priority) / 256 x
        // advert, under 1 ms (61 ms at priority 100).
        let (default_advert, default_priority) = if settings.failover {
            (100, 254)
        } else {
            (1000, 100)
        };
        settings.advert_int_ms = advert.unwrap_or(default_advert);
        settings.priority = priority.unwrap_or(default_priority);
        settings.check()?;
        Ok(settings)
    }

    /// Rejects values the host's plan checker would reject later, so the user
    /// gets one "bad settings" error instead of one error per node.
    fn check(&self) -> Result<(), String> {
        let ms = self.advert_int_ms;
        let v2 = ms.is_multiple_of(1000) && (1000..=255_000).contains(&ms);
        let v3 = ms.is_multiple_of(10) && (10..=40_950).contains(&ms);
        if !(v2 || v3) {
            return Err(format!(
                "advert_int_ms: {ms} is neither whole seconds up to 255000 (VRRPv2) \
                 nor 10..40950 in steps of 10 (VRRPv3)"
            ));
        }
        if !(1..=254).contains(&self.priority) {
            return Err(format!("priority: {} is not in 1..254", self.priority));
        }
        Ok(())
    }

    /// VRRPv2 only carries whole-second adverts; anything finer needs v3.
    pub fn vrrp_version(&self) -> u8 {
        if self.advert_int_ms.is_multiple_of(1000) {
            2
        } else {
            3
        }
    }
}

/// One settings value, with the key in the error.
fn field<T: serde::de::DeserializeOwned>(key: &str, value: serde_json::Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| format!("{key}: {e}"))
}
