//! The score. Pure: the views of providers in, the breakdown out.

use std::collections::BTreeSet;

use skynet_contract::ExecSpec;
use skynet_contract::executor::Health;
use skynet_contract::job::ProviderScore;

use crate::config::Weights;

/// What the scheduler knows about one provider right now.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderView {
    pub name: String,
    /// Best health over the executors offering it.
    pub health: Health,
    pub health_message: String,
    /// Union of capabilities (`*` = anything).
    pub capabilities: BTreeSet<String>,
    /// Jobs running / capacity, over the executors offering it.
    pub running: u32,
    pub capacity: u32,
    /// Finished jobs in the window and how many succeeded.
    pub finished: u32,
    pub succeeded: u32,
    /// Mean duration of finished jobs, seconds (0 = no data).
    pub mean_duration_secs: f64,
}

/// Capabilities a spec needs: its distinct actions.
pub fn required(spec: &ExecSpec) -> Vec<String> {
    spec.steps.iter().map(|s| s.action.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Every provider's score for `spec`, best first; excluded ones last, with why.
pub fn score(spec: &ExecSpec, providers: &[ProviderView], w: &Weights) -> Vec<ProviderScore> {
    let need = required(spec);
    let mut scores: Vec<ProviderScore> = providers.iter().map(|p| score_one(&need, p, w)).collect();
    scores.sort_by(|a, b| {
        a.excluded
            .is_some()
            .cmp(&b.excluded.is_some())
            .then(b.total.total_cmp(&a.total))
            // Ties: the less loaded, then by name — never declaration order.
            .then(b.load.total_cmp(&a.load))
            .then(a.provider.cmp(&b.provider))
    });
    scores
}

/// The chosen provider, or why there is none.
pub fn select(scores: &[ProviderScore], need: &[String]) -> Result<String, String> {
    if let Some(best) = scores.iter().find(|s| s.excluded.is_none()) {
        return Ok(best.provider.clone());
    }
    if scores.is_empty() {
        return Err("no provider is online".into());
    }
    let why: Vec<String> =
        scores.iter().map(|s| format!("{}: {}", s.provider, s.excluded.as_deref().unwrap_or("?"))).collect();
    Err(format!("no provider can run this job (needs {}): {}", need.join(", "), why.join("; ")))
}

fn score_one(need: &[String], p: &ProviderView, w: &Weights) -> ProviderScore {
    let all = p.capabilities.contains("*");
    let missing: Vec<&str> = need.iter().filter(|a| !all && !p.capabilities.contains(*a)).map(String::as_str).collect();
    let capability = if need.is_empty() { 1.0 } else { (need.len() - missing.len()) as f64 / need.len() as f64 };
    let health = match p.health {
        Health::Healthy => 1.0,
        Health::Degraded => 0.5,
        Health::Unhealthy => 0.0,
    };
    let load = if p.capacity == 0 { 0.0 } else { 1.0 - (f64::from(p.running) / f64::from(p.capacity)).min(1.0) };
    let success = success_score(p.finished, p.succeeded);
    let latency = latency_score(p.mean_duration_secs);
    let total =
        w.health * health + w.load * load + w.capability * capability + w.success * success + w.latency * latency;
    let excluded = if !missing.is_empty() {
        Some(format!("lacks {}", missing.join(", ")))
    } else if p.health == Health::Unhealthy {
        Some(format!("unhealthy: {}", p.health_message))
    } else if p.capacity == 0 {
        Some("no capacity".to_owned())
    } else {
        None
    };
    ProviderScore { provider: p.name.clone(), total, health, load, capability, success, latency, excluded }
}

/// Laplace-smoothed success rate, pulled towards 0.5 while there are fewer than
/// three data points (the predecessor's formula).
pub fn success_score(n: u32, s: u32) -> f64 {
    if n == 0 {
        return 0.5;
    }
    let rate = (f64::from(s) + 1.0) / (f64::from(n) + 2.0);
    if n < 3 {
        let k = f64::from(n) / 3.0;
        rate * k + 0.5 * (1.0 - k)
    } else {
        rate
    }
}

/// 1.0 up to a minute, falling to 0 at two minutes; 0.5 without data.
pub fn latency_score(mean_secs: f64) -> f64 {
    if mean_secs <= 0.0 {
        0.5
    } else if mean_secs <= 60.0 {
        1.0
    } else {
        (2.0 - mean_secs / 60.0).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use skynet_contract::{ExecStep, Risk};

    use super::*;

    fn spec(actions: &[&str]) -> ExecSpec {
        ExecSpec {
            steps: actions
                .iter()
                .enumerate()
                .map(|(i, a)| ExecStep {
                    index: i as u32,
                    action: (*a).into(),
                    params: Default::default(),
                    timeout_secs: 60,
                    risk: Risk::ReadOnly,
                    continue_on_error: false,
                    description: String::new(),
                })
                .collect(),
            working_dir: "/tmp".into(),
            total_timeout_secs: 60,
            approved_risk: Risk::Write,
        }
    }

    fn view(name: &str, caps: &[&str]) -> ProviderView {
        ProviderView {
            name: name.into(),
            health: Health::Healthy,
            health_message: "ok".into(),
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            running: 0,
            capacity: 10,
            finished: 0,
            succeeded: 0,
            mean_duration_secs: 0.0,
        }
    }

    fn pick(spec: &ExecSpec, views: &[ProviderView]) -> Result<String, String> {
        select(&score(spec, views, &Weights::default()), &required(spec))
    }

    #[test]
    fn neutral_score_is_the_predecessors_0_90() {
        let s = score(&spec(&["git_status"]), &[view("local", &["git_status"])], &Weights::default());
        assert!((s[0].total - 0.90).abs() < 1e-9, "{}", s[0].total);
    }

    #[test]
    fn each_signal_moves_the_choice() {
        let s = spec(&["run_tests"]);
        let a = view("a", &["run_tests"]);
        let b = view("b", &["run_tests"]);
        // Health.
        let sick = ProviderView { health: Health::Degraded, ..a.clone() };
        assert_eq!(pick(&s, &[sick, b.clone()]), Ok("b".into()));
        // Load.
        let busy = ProviderView { running: 9, ..b.clone() };
        assert_eq!(pick(&s, &[a.clone(), busy]), Ok("a".into()));
        // Past success.
        let flaky = ProviderView { finished: 10, succeeded: 2, ..a.clone() };
        let solid = ProviderView { finished: 10, succeeded: 10, ..b.clone() };
        assert_eq!(pick(&s, &[flaky, solid]), Ok("b".into()));
        // Latency.
        let slow = ProviderView { finished: 5, succeeded: 5, mean_duration_secs: 110.0, ..a.clone() };
        let fast = ProviderView { finished: 5, succeeded: 5, mean_duration_secs: 5.0, ..b.clone() };
        assert_eq!(pick(&s, &[slow, fast]), Ok("b".into()));
    }

    #[test]
    fn a_provider_lacking_a_capability_is_never_chosen() {
        let s = spec(&["git_status", "docker_build"]);
        let cheap = ProviderView { finished: 100, succeeded: 100, ..view("local", &["git_status"]) };
        let able = ProviderView { running: 9, ..view("docker", &["git_status", "docker_build"]) };
        assert_eq!(pick(&s, &[cheap.clone(), able]), Ok("docker".into()));
        let err = pick(&s, &[cheap]).expect_err("nobody can");
        assert!(err.contains("local: lacks docker_build"), "{err}");
        let unhealthy = ProviderView { health: Health::Unhealthy, health_message: "down".into(), ..view("x", &["*"]) };
        assert!(pick(&s, &[unhealthy]).expect_err("unhealthy").contains("unhealthy: down"));
        assert_eq!(pick(&s, &[]), Err("no provider is online".into()));
    }

    #[test]
    fn ties_do_not_favour_mock() {
        let s = spec(&["git_status"]);
        let got = pick(&s, &[view("mock", &["*"]), view("local", &["git_status"])]);
        assert_eq!(got, Ok("local".into()), "equal scores: by name, not declaration order");
    }

    #[test]
    fn success_and_latency_formulas() {
        assert_eq!(success_score(0, 0), 0.5);
        assert!((success_score(10, 10) - 11.0 / 12.0).abs() < 1e-9);
        assert!((success_score(1, 1) - ((2.0 / 3.0) * (1.0 / 3.0) + 0.5 * (2.0 / 3.0))).abs() < 1e-9);
        assert_eq!(
            (latency_score(0.0), latency_score(30.0), latency_score(90.0), latency_score(200.0)),
            (0.5, 1.0, 0.5, 0.0)
        );
    }
}
