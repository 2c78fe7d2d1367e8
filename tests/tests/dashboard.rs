//! The web dashboard against the running system. In a real browser (Debian's
//! Chromium over WebDriver): sign in, submit from the form after a plan
//! preview, watch the row appear and finish without a reload, read the job's
//! timeline and output, approve a WRITE job from the Approvals page as another
//! person, and see an intent carrying a script shown as text. Over plain HTTP:
//! every form refuses a request without its CSRF token, and pages need
//! sign-in (with the read role) when reads are closed.

use std::time::Duration;

use fantoccini::Locator;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::json;
use skynet_system_tests::browser::Browser;
use skynet_system_tests::{System, WAIT, token};
use skynet_testkit::eventually;

/// A field's value attribute in a page (`name="csrf" value="…"`).
fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    Some(html[at..].split('"').next()?.to_owned())
}

async fn css(c: &fantoccini::Client, sel: &str) -> anyhow::Result<fantoccini::elements::Element> {
    match c.wait().at_most(WAIT).for_element(Locator::Css(sel)).await {
        Ok(e) => Ok(e),
        Err(e) => {
            let at = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let text = match c.find(Locator::Css("body")).await {
                Ok(b) => b.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            Err(anyhow::anyhow!("no {sel:?} on {at} ({e}); the page says:\n{text}"))
        }
    }
}

async fn sign_in(c: &fantoccini::Client, url: &str, who: &str) -> anyhow::Result<()> {
    c.goto(&format!("{url}/login")).await?;
    css(c, "#token").await?.send_keys(&token(who)).await?;
    css(c, "form[action='/login'] button").await?.click().await?;
    let signed = css(c, ".who strong").await?.text().await?;
    anyhow::ensure!(signed == who, "signed in as {signed:?}, not {who}");
    Ok(())
}

/// The job id of the job page the browser shows.
async fn job_of_page(c: &fantoccini::Client) -> anyhow::Result<uuid::Uuid> {
    let at = c.current_url().await?;
    let id = at.path().strip_prefix("/jobs/").ok_or_else(|| anyhow::anyhow!("not a job page: {at}"))?;
    Ok(id.parse()?)
}

/// Submits `intent` through the form (preview first) and returns the job.
async fn submit_from_form(c: &fantoccini::Client, url: &str, intent: &str, dir: &str) -> anyhow::Result<uuid::Uuid> {
    c.goto(&format!("{url}/submit")).await?;
    css(c, "#intent").await?.send_keys(intent).await?;
    css(c, "#working_dir").await?.send_keys(dir).await?;
    css(c, "button[value='preview']").await?.click().await?;
    let preview = css(c, "section.preview").await?.text().await?;
    anyhow::ensure!(preview.contains("Plan preview"), "no preview: {preview}");
    css(c, "button[value='submit']").await?.click().await?;
    // The page fills in live once the job reaches the read models.
    css(c, "#job-live h1.intent").await?;
    job_of_page(c).await
}

#[tokio::test]
async fn in_a_browser_people_submit_follow_and_approve_jobs() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let project = sys.project();
    std::process::Command::new("git").args(["init", "-q", &project]).status()?;
    let url = sys.api(skynet_api::Config::default()).await?;
    let browser = Browser::start().await?;
    let c = &browser.client;

    // Reads are closed: the dashboard asks to sign in first.
    c.goto(&format!("{url}/")).await?;
    css(c, "#token").await?;
    assert_eq!(c.current_url().await?.path(), "/login");
    sign_in(c, &url, "alice").await?;

    // The jobs page stays open in one window while another submits.
    let jobs_window = c.window().await?;
    c.goto(&format!("{url}/")).await?;
    css(c, "#job-rows").await?;
    // Anything set on this page is gone if it reloads.
    c.execute("window.notReloaded = true;", vec![]).await?;
    let form_window = c.new_window(true).await?.handle;
    c.switch_to_window(form_window.clone()).await?;
    let job = submit_from_form(c, &url, "check git status", &project).await?;

    c.switch_to_window(jobs_window.clone()).await?;
    let row = format!("tr#job-{job}");
    eventually(WAIT, "the row to appear and succeed without a reload", || async {
        let r = c.find(Locator::Css(&row)).await.ok()?;
        (r.attr("data-status").await.ok()?? == "succeeded").then_some(())
    })
    .await?;
    assert_eq!(c.execute("return window.notReloaded === true;", vec![]).await?, json!(true), "the page reloaded");
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/screenshots"))?;
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/screenshots/jobs.png"), c.screenshot().await?)?;

    // The job page: plan, steps with output, the policy, the timeline from the log.
    c.goto(&format!("{url}/jobs/{job}")).await?;
    let page = css(c, "#job-live").await?.text().await?;
    for expected in ["Plan", "Policy", "Steps", "Timeline", "READ_ONLY", "requested", "succeeded"] {
        assert!(page.contains(expected), "{expected:?} not on the job page:\n{page}");
    }
    let output = css(c, "article.step pre.out").await?.text().await?;
    assert!(output.contains("On branch"), "the step's output is shown: {output}");
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/screenshots/job.png"), c.screenshot().await?)?;
    css(c, "ol.timeline details summary").await?.click().await?;
    let opened = css(c, "ol.timeline details[open] pre").await?.text().await?;
    assert!(opened.contains("check git status"), "the first event's data: {opened}");

    // A WRITE job waits; its requester may not approve it, Bob may.
    c.switch_to_window(form_window).await?;
    let build = submit_from_form(c, &url, "build the project", &project).await?;
    sys.wait_for(build, "skynet.job.policy_decided.v1").await?;
    css(c, "form[action='/logout'] button").await?.click().await?;
    sign_in(c, &url, "bob").await?;
    c.goto(&format!("{url}/approvals")).await?;
    css(c, &format!("#wait-{build} button.approve")).await?.click().await?;
    let flash = css(c, "p.flash").await?.text().await?;
    assert!(flash.contains("approve done"), "{flash}");
    let approved = sys.wait_for(build, "skynet.job.approved.v1").await?;
    assert_eq!(approved["data"]["approver"], "bob", "the log names who clicked");
    sys.wait_for(build, "skynet.job.succeeded.v1").await?;

    // A script in an intent is text: shown as typed, never run.
    let evil = "check git status <script>alert(1)</script>";
    let bad = submit_from_form(c, &url, evil, &project).await?;
    c.goto(&format!("{url}/")).await?;
    let shown = css(c, &format!("tr#job-{bad} td.intent")).await?.text().await?;
    assert_eq!(shown, evil);
    c.goto(&format!("{url}/jobs/{bad}")).await?;
    assert_eq!(css(c, "h1.intent").await?.text().await?, evil);
    assert!(c.get_alert_text().await.is_err(), "a dialog opened");
    browser.close().await?;
    sys.shutdown().await
}

#[tokio::test]
async fn every_form_needs_its_csrf_token_and_closed_reads_need_sign_in() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let url = sys.api(skynet_api::Config::default()).await?;
    let http = reqwest::Client::builder().redirect(Policy::none()).timeout(Duration::from_secs(10)).build()?;

    // Signed out: every page sends to the sign-in form (back to where it was).
    for page in ["/", "/approvals", "/executors", "/alerts", "/submit", "/jobs/00000000-0000-0000-0000-000000000000"] {
        let r = http.get(format!("{url}{page}")).send().await?;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{page}");
        let to = r.headers()["location"].to_str()?;
        assert!(to.starts_with("/login?next="), "{page} → {to}");
    }
    // The live feeds and full output too.
    let r = http.get(format!("{url}/live/jobs")).send().await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Sign-in itself is a form: without the cookie's token it is refused.
    let login = http.get(format!("{url}/login")).send().await?;
    let cookie = login.headers()["set-cookie"].to_str()?.to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pre = cookie.split(';').next().unwrap_or_default().to_owned();
    let csrf = hidden(&login.text().await?, "csrf").unwrap_or_default();
    let post = |path: &str, cookie: &str, form: Vec<(&str, String)>| {
        http.post(format!("{url}{path}")).header("cookie", cookie.to_owned()).form(&form).send()
    };
    let r = post("/login", &pre, vec![("token", token("alice"))]).await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "sign-in without the CSRF token");
    let r = post("/login", "", vec![("token", token("alice")), ("csrf", csrf.clone())]).await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "sign-in without the CSRF cookie");
    let r = post("/login", &pre, vec![("token", "nope".into()), ("csrf", csrf.clone())]).await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "an unknown token");
    let (http_ref, url_ref) = (&http, &url);
    let sign_in = |who: &'static str| {
        let (pre, csrf) = (pre.clone(), csrf.clone());
        let (post, http, url) = (&post, http_ref, url_ref);
        async move {
            let r = post("/login", &pre, vec![("token", token(who)), ("csrf", csrf)]).await?;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{who} signs in");
            let set = r.headers()["set-cookie"].to_str()?.to_owned();
            assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
            let session = set.split(';').next().unwrap_or_default().to_owned();
            let page = http.get(format!("{url}/")).header("cookie", &session).send().await?;
            assert_eq!(page.status(), StatusCode::OK);
            assert!(page.headers()["content-security-policy"].to_str()?.contains("script-src 'self'"));
            let html = page.text().await?;
            assert!(html.contains(&format!("<strong>{who}</strong>")), "signed in as {who}");
            anyhow::Ok((session, hidden(&html, "csrf").unwrap_or_default()))
        }
    };
    let (alice, alice_csrf) = sign_in("alice").await?;
    let (_bob, bob_csrf) = sign_in("bob").await?;

    let waiting = sys.submit("csrf-1", json!({"intent": "build the project", "working_dir": sys.project()})).await?;
    sys.wait_for(waiting, "skynet.job.policy_decided.v1").await?;
    // The page reads the read model, which trails the log: wait until it shows
    // the job waiting, so "still waiting" below means the refusals changed nothing.
    let job_page = || async {
        let r = http.get(format!("{url}/jobs/{waiting}")).header("cookie", &alice).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())?;
        r.text().await.ok()
    };
    eventually(WAIT, "the job page to show the job waiting for approval", || async {
        job_page().await.filter(|html| html.contains("s-awaiting_approval"))
    })
    .await?;
    let jobs_before = sys.read_all("SKYNET_EVENTS", "skynet.job.*.requested").await?.len();
    let forms: Vec<(String, Vec<(&str, String)>)> = vec![
        ("/submit".into(), vec![("op", "submit".into()), ("intent", "check git status".into())]),
        (format!("/jobs/{waiting}/approve"), vec![]),
        (format!("/jobs/{waiting}/deny"), vec![("reason", "no".into())]),
        (format!("/jobs/{waiting}/cancel"), vec![]),
        ("/jobs/cancel".into(), vec![("job", waiting.to_string())]),
        ("/logout".into(), vec![]),
    ];
    for (path, fields) in &forms {
        // No token, another session's token, an empty one: all refused.
        for csrf in [None, Some(bob_csrf.clone()), Some(String::new())] {
            let mut form = fields.clone();
            if let Some(t) = csrf.clone() {
                form.push(("csrf", t));
            }
            let r = post(path, &alice, form).await?;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} with csrf {csrf:?}");
            assert!(r.text().await?.contains("CSRF"), "{path}: the page says why");
        }
    }
    // Nothing happened: the job still waits, no job was submitted, Alice is still signed in.
    let row = job_page().await.ok_or_else(|| anyhow::anyhow!("the job page, still signed in"))?;
    assert!(row.contains("s-awaiting_approval"), "still waiting");
    assert_eq!(sys.read_all("SKYNET_EVENTS", "skynet.job.*.requested").await?.len(), jobs_before);

    // With the token the same form works (so the refusals above were the token's).
    let r = post(&format!("/jobs/{waiting}/cancel"), &alice, vec![("csrf", alice_csrf.clone())]).await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    sys.wait_for(waiting, "skynet.job.cancelled.v1").await?;

    // Signing out ends the session on the server: the cookie is worthless after.
    let r = post("/logout", &alice, vec![("csrf", alice_csrf)]).await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = http.get(format!("{url}/")).header("cookie", &alice).send().await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "an ended session is no session");

    // A principal without the read role sees nothing while reads are closed.
    sys.principal("writer", "token-writer", &[skynet_contract::principal::PrincipalRole::Submit]).await?;
    let r = post("/login", &pre, vec![("token", "token-writer".into()), ("csrf", csrf.clone())]).await?;
    let writer = r.headers()["set-cookie"].to_str()?.split(';').next().unwrap_or_default().to_owned();
    let r = http.get(format!("{url}/")).header("cookie", &writer).send().await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // With open reads the pages show without sign-in; changing anything still needs it.
    let open = sys.api(skynet_api::Config { open_reads: true, ..Default::default() }).await?;
    let r = http.get(format!("{open}/")).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await?.contains(&format!("job-{waiting}")), "the jobs are listed");
    let r = http.post(format!("{open}/jobs/{waiting}/cancel")).form(&[("csrf", "x")]).send().await?;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "to the sign-in form");
    sys.shutdown().await
}
