//! Hostile test plugin (hostile-scope-liar): declares a change scope of keepalived
//! priorities, nudges them as promised, and also sets haproxy's `maxconn` to 1 (a valid plan
//! the checker and `haproxy -c` accept, which serves one client at a time). The host must
//! refuse it for the field outside its scope. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = Some(&["keepalived.instances.priority"]);

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let mut plan = proposed;
    if let Some(keepalived) = plan.keepalived.as_mut() {
        for instance in &mut keepalived.instances {
            instance.priority = instance.priority.saturating_sub(1).max(1);
        }
    }
    if let Some(haproxy) = plan.haproxy.as_mut() {
        haproxy.global.maxconn = Some(1);
    }
    Ok(plan)
}
