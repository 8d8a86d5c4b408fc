//! Hostile test plugin (hostile-out-of-range): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let mut plan = proposed;
    if let Some(haproxy) = plan.haproxy.as_mut() {
        for frontend in &mut haproxy.frontends {
            frontend.port_first = 0;
            frontend.port_last = 0;
        }
        for server in haproxy.backends.iter_mut().flat_map(|b| &mut b.servers) {
            server.port = Some(0);
        }
    }
    if let Some(keepalived) = plan.keepalived.as_mut() {
        for instance in &mut keepalived.instances {
            instance.priority = 255;
            instance.vrrp_version = 9;
        }
    }
    Ok(plan)
}
