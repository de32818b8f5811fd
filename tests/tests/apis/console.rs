//! The operator console and the access explainer, end to end: the real gridmq binary, real MQTT
//! clients, a wiremock webhook, and the console driven in Debian's headless Chromium through
//! chromedriver (WebDriver, with fantoccini). Screenshots go to
//! `target/tmp/console-screenshots/`.

use std::net::{SocketAddr, TcpListener};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::http::request;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "console-admin-token-0123456789";

/// How long the browser steps wait for what they expect.
const WAIT: Duration = Duration::from_secs(20);

fn config(webhook: &str) -> String {
    format!(
        r#"
[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[auth]
allow_anonymous = true

[clients.car1]
attributes = {{ fleet = "cars" }}
[clients.car2]
attributes = {{ fleet = "cars" }}

[clientGroups.cars]
query = "attributes.fleet = 'cars'"

[topicSpaces.vehicles]
topicTemplates = ["vehicles/${{client.authenticationName}}/#"]

[permissionBindings.cars-pub]
clientGroupName = "cars"
topicSpaceName = "vehicles"
permission = "Publisher"
[permissionBindings.cars-sub]
clientGroupName = "cars"
topicSpaceName = "vehicles"
permission = "Subscriber"

[[routing.routes]]
topic = "telemetry"

[topics.telemetry.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{webhook}/hook"
"#
    )
}

/// A webhook that passes the handshake and answers `status` to every POST.
async fn mount(server: &MockServer, status: u16) {
    Mock::given(method("OPTIONS"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("WebHook-Allowed-Origin", "eventgrid.azure.net"),
        )
        .mount(server)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(status)).mount(server).await;
}

#[tokio::test]
async fn access_check_explains_against_the_binary_and_needs_the_token() -> Result<()> {
    let gridmq = Gridmq::start_with_config(&config("http://127.0.0.1:9"));
    let api = gridmq.http.context("management API")?;
    let mut car1 = v5::Client::connect(gridmq.addr, "car1").await;
    let granted = car1.subscribe("vehicles/car1/#", v5::QoS::AtLeastOnce).await;
    assert!(format!("{granted:?}").starts_with("Success"), "{granted:?}");
    let allowed = json!({"client": "car1", "action": "publish", "topic": "vehicles/car1/speed"});
    let (status, answer) = request(api, "POST", "/access:check", TOKEN, Some(&allowed)).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["client"]["foundAs"], "session", "the connected client's identity");
    assert_eq!(answer["grantedBy"][0]["binding"], "cars-pub");
    assert_eq!(answer["grantedBy"][0]["substituted"], "vehicles/car1/#");
    let denied = json!({"client": "car1", "action": "publish", "topic": "vehicles/car2/speed"});
    let (status, answer) = request(api, "POST", "/access:check", TOKEN, Some(&denied)).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["allowed"], false);
    let cars_pub = answer["bindings"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["binding"] == "cars-pub"))
        .context("cars-pub")?;
    assert_eq!(cars_pub["verdict"], "noTemplateMatches");
    // The explainer says what the broker does: that publish is refused on the wire.
    let reason = answer["reason"].as_str().context("reason")?.to_string();
    car1.publish("vehicles/car2/speed", v5::QoS::AtLeastOnce, false, b"x").await;
    let puback = car1.puback().await;
    assert_eq!(format!("{:?}", puback.reason), "NotAuthorized", "{puback:?}");
    assert!(reason.starts_with("not authorized: publish to \"vehicles/car2/speed\""), "{reason}");
    for token in ["", "wrong-token-0123456789"] {
        let (status, _) = request(api, "POST", "/access:check", token, Some(&allowed)).await?;
        assert_eq!(status, 401);
        let (status, _) = request(api, "GET", "/console/api/sessions", token, None).await?;
        assert_eq!(status, 401);
    }
    Ok(())
}

#[tokio::test]
async fn the_sessions_api_lists_and_deletes_a_persistent_session() -> Result<()> {
    let mut gridmq = Gridmq::start_with_config(&config("http://127.0.0.1:9"));
    let api = gridmq.http.context("management API")?;
    let mut options = gateway_tests::clients::v4::options(gridmq.addr, "car2");
    options.set_clean_session(false);
    let mut car2 = gateway_tests::clients::v4::Client::connect_with(options.clone()).await?;
    car2.subscribe("vehicles/car2/#", gateway_tests::clients::v4::QoS::AtLeastOnce).await;
    let (status, listing) =
        request(api, "GET", "/console/api/sessions?search=CAR2", TOKEN, None).await?;
    assert_eq!(status, 200, "{listing}");
    let row = &listing["value"][0];
    assert_eq!((row["clientId"].as_str(), row["connected"].as_bool()), (Some("car2"), Some(true)));
    assert_eq!(row["protocol"], "MQTT3");
    assert_eq!(row["subscriptions"], json!({"vehicles/car2/#": 1}));
    car2.disconnect().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, listing) =
            request(api, "GET", "/console/api/sessions?search=car2", TOKEN, None).await?;
        let row = &listing["value"][0];
        if row["connected"] == false && row["hasSession"] == true {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "still connected: {listing}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = request(api, "DELETE", "/console/api/sessions/car2", TOKEN, None).await?;
    assert_eq!(status, 200);
    let (status, _) = request(api, "DELETE", "/console/api/sessions/car2", TOKEN, None).await?;
    assert_eq!(status, 404, "nothing left to delete");
    let car2 = gateway_tests::clients::v4::Client::connect_with(options).await?;
    assert!(!car2.connack.session_present, "the session was discarded");
    drop(car2);

    // A live trace that is open does not hold the broker's shutdown up.
    let mut stream = tokio::net::TcpStream::connect(api).await?;
    let get = format!(
        "GET /console/api/trace?filter=%23 HTTP/1.1\r\nhost: {api}\r\n\
         authorization: Bearer {TOKEN}\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, get.as_bytes()).await?;
    let mut head = vec![0; 512];
    let read =
        tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut stream, &mut head)).await??;
    let head = String::from_utf8_lossy(&head[..read]).to_string();
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"), "{head}");
    let started = std::time::Instant::now();
    let status = gridmq.terminate(Duration::from_secs(10)).context("exits on SIGTERM")?;
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    Ok(())
}

/// chromedriver on a free loopback port, stopped by pid when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Result<(Driver, Client)> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("chromedriver (Debian package chromium-driver) must be installed")?;
        let profile = tempfile::tempdir()?;
        let driver = Driver { child, port, _profile: profile };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", driver._profile.path().display())])
        .collect::<Vec<_>>();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let url = format!("http://127.0.0.1:{}", driver.port);
        // Chromium starts slowly on a loaded machine.
        let deadline = tokio::time::Instant::now() + 3 * WAIT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) if tokio::time::Instant::now() > deadline => {
                    bail!("no WebDriver session: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Ok((driver, client))
    }
}

/// Waits until the text of the first element matching `css` satisfies `done`; returns it.
async fn wait_text(browser: &Client, css: &str, done: impl Fn(&str) -> bool) -> Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if done(&text) {
                return Ok(text);
            }
            last = text;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("gave up waiting on {css:?}; its text was {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(browser: &Client, css: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match browser.find(Locator::Css(css)).await {
            Ok(element) if element.is_displayed().await.unwrap_or(false) => {
                element.click().await.with_context(|| format!("click {css}"))?;
                return Ok(());
            }
            _ if tokio::time::Instant::now() > deadline => bail!("no {css:?} to click"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn fill(browser: &Client, css: &str, text: &str) -> Result<()> {
    let element = browser.find(Locator::Css(css)).await.with_context(|| css.to_string())?;
    element.clear().await?;
    element.send_keys(text).await?;
    Ok(())
}

async fn confirm(browser: &Client) -> Result<()> {
    click(browser, "#confirm-ok").await
}

async fn visible(browser: &Client, css: &str) -> Result<bool> {
    Ok(browser.find(Locator::Css(css)).await?.is_displayed().await?)
}

fn screenshots() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn screenshot(browser: &Client, name: &str) -> Result<()> {
    let png = browser.screenshot().await?;
    std::fs::write(screenshots()?.join(name), png)?;
    Ok(())
}

async fn go(browser: &Client, base: &str, page: &str) -> Result<()> {
    browser.goto(&format!("{base}#{page}")).await?;
    browser.refresh().await?;
    Ok(())
}

#[tokio::test]
async fn the_console_in_a_real_browser() -> Result<()> {
    let webhook = MockServer::start().await;
    mount(&webhook, 400).await;
    let gridmq = Gridmq::start_with_config(&config(&webhook.uri()));
    let api: SocketAddr = gridmq.http.context("management API")?;
    let base = format!("http://{api}/console");
    let (_driver, browser) = Driver::start().await?;
    // A failed assertion unwinds; the browser is closed first, so that no Chromium outlives
    // the test (killing chromedriver alone would leave it running).
    let outcome =
        AssertUnwindSafe(drive(&browser, &gridmq, api, &base, &webhook)).catch_unwind().await;
    if !matches!(outcome, Ok(Ok(()))) {
        let _ = screenshot(&browser, "failure.png").await;
    }
    browser.close().await?;
    match outcome {
        Ok(outcome) => outcome,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn drive(
    browser: &Client,
    gridmq: &Gridmq,
    api: SocketAddr,
    base: &str,
    webhook: &MockServer,
) -> Result<()> {
    // A wrong token: the login page stays, and the API it tried answered 401.
    browser.goto(base).await?;
    assert!(visible(browser, "#login").await?);
    assert!(!visible(browser, "#nav").await?, "nothing but the login before a token");
    fill(browser, "#token", "wrong-token-0123456789").await?;
    click(browser, "#login-submit").await?;
    wait_text(browser, "#login-error", |t| t.contains("refused")).await?;
    assert!(visible(browser, "#login").await?);
    let (status, _) =
        request(api, "GET", "/console/api/info", "wrong-token-0123456789", None).await?;
    assert_eq!(status, 401);

    // The right token: the overview.
    fill(browser, "#token", TOKEN).await?;
    click(browser, "#login-submit").await?;
    wait_text(browser, "#info", |t| t.contains("Version") && t.contains("mqtt 127.0.0.1")).await?;

    // A connected client appears; the console disconnects it.
    go(browser, base, "clients").await?;
    let mut car1 = v5::Client::connect(gridmq.addr, "car1").await;
    let row = "#sessions tr[data-client='car1'] .state";
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        click(browser, "#client-search button").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(element) = browser.find(Locator::Css(row)).await
            && element.text().await?.starts_with("connected")
        {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("car1 never appeared as connected");
        }
    }
    click(browser, "button[data-action='disconnect'][data-client='car1']").await?;
    confirm(browser).await?;
    let ended = car1.inbox.ended(WAIT).await;
    assert!(ended.is_some(), "the client's connection was closed");
    wait_text(browser, row, |t| !t.starts_with("connected")).await?;

    // The explainer: an allowed and a denied publish.
    go(browser, base, "access").await?;
    wait_text(browser, "#access-groups tbody", |t| t.contains("car1, car2")).await?;
    fill(browser, "#explain-client", "car1").await?;
    fill(browser, "#explain-topic", "vehicles/car1/speed").await?;
    click(browser, "#explain-submit").await?;
    wait_text(browser, "#explain-verdict", |t| t == "Allowed").await?;
    let reason = wait_text(browser, "#explain-reason", |t| !t.is_empty()).await?;
    assert!(reason.contains("\"cars-pub\"") && reason.contains("\"vehicles\""), "{reason}");
    screenshot(browser, "explainer-allowed.png").await?;
    fill(browser, "#explain-topic", "vehicles/car2/speed").await?;
    click(browser, "#explain-submit").await?;
    wait_text(browser, "#explain-verdict", |t| t == "Denied").await?;
    let table = wait_text(browser, "#explain-bindings", |t| !t.is_empty()).await?;
    assert!(table.contains("no template of topic space \"vehicles\" matches"), "{table}");
    screenshot(browser, "explainer.png").await?;

    // A message the webhook refuses (400) is dead-lettered at once; the console shows the
    // error and its time, and re-drives the message to the recovered endpoint.
    let mut car1 = v5::Client::connect(gridmq.addr, "car1").await;
    let published = sinks::event::format_time(std::time::SystemTime::now());
    car1.publish("vehicles/car1/speed", v5::QoS::AtLeastOnce, false, br#"{"speed":42}"#).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        go(browser, base, "routing").await?;
        let count =
            wait_text(browser, "tr[data-subscription='telemetry/hook'] .dead-count", |_| true)
                .await
                .unwrap_or_default();
        if count == "1" {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no dead letter shown; count {count:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let cell = "tr[data-subscription='telemetry/hook'] .last-error";
    let shown = wait_text(browser, cell, |t| !t.is_empty()).await?;
    assert!(shown.starts_with("BadRequest (HTTP 400)"), "{shown}");
    // The time in the browser's local time, the raw RFC 3339 UTC value in the markup.
    let time = browser.find(Locator::Css(&format!("{cell} time"))).await?;
    let raw = time.attr("title").await?.context("the raw time as a title")?;
    let now = sinks::event::format_time(std::time::SystemTime::now());
    assert!(published <= raw && raw <= now && raw.ends_with('Z'), "{raw}");
    let datetime = time.attr("datetime").await?.context("datetime")?;
    assert_eq!(datetime, format!("{}Z", &raw[..23]), "milliseconds, as HTML takes them");
    let local = time.text().await?;
    assert!(!local.is_empty() && local != raw && shown.ends_with(&local), "{shown}");
    screenshot(browser, "routing.png").await?;
    click(browser, "tr[data-subscription='telemetry/hook'] button[data-action='dead-letters']")
        .await?;
    let record = wait_text(browser, "#dl-list li pre.dl-record", |t| t.contains("speed")).await?;
    assert!(record.contains("\"deadletterreason\": \"NonRetriable\""), "{record}");
    let data = wait_text(browser, "#dl-list li .dl-data", |t| !t.is_empty()).await?;
    assert_eq!(data, "{\n  \"speed\": 42\n}", "the event's data, decoded and pretty-printed");
    webhook.reset().await;
    mount(webhook, 200).await;
    click(browser, "#dl-list li button[data-action='redrive-one']").await?;
    confirm(browser).await?;
    gateway_tests::webhook::wait_posts(webhook, "/hook", WAIT, |posts| !posts.is_empty()).await;
    let posts = gateway_tests::webhook::posts(webhook, "/hook").await;
    let event: Value = serde_json::from_slice(&posts[0].body)?;
    // Published without a content type, so routed as bytes: base64 of `{"speed":42}`.
    assert_eq!(event["data_base64"], "eyJzcGVlZCI6NDJ9", "{event}");
    wait_text(browser, "tr[data-subscription='telemetry/hook'] .dead-count", |t| t == "0").await?;

    // A live trace of a published message, with where routing took it.
    go(browser, base, "trace").await?;
    fill(browser, "#trace-filter", "vehicles/#").await?;
    click(browser, "#trace-start").await?;
    wait_text(browser, "#trace-state", |t| t.starts_with("Watching")).await?;
    car1.publish("vehicles/car1/door", v5::QoS::AtLeastOnce, false, br#"{"open":true}"#).await;
    let traced = wait_text(browser, "#trace-list li", |t| t.contains("vehicles/car1/door")).await?;
    assert!(traced.contains("{\"open\":true}"), "{traced}");
    assert!(traced.contains("Routed to topic telemetry, taken by: hook"), "{traced}");
    click(browser, "#trace-stop").await?;

    // The overview, sampling while traffic flows (a subscriber, routed events), for the README.
    go(browser, base, "overview").await?;
    wait_text(browser, "#chart-messages figcaption", |t| t.contains("Messages")).await?;
    let granted = car1.subscribe("vehicles/car1/#", v5::QoS::AtMostOnce).await;
    assert!(format!("{granted:?}").starts_with("Success"), "{granted:?}");
    let started = tokio::time::Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(14) {
        n += 1;
        let payload = format!("{{\"speed\":{}}}", n % 90);
        for _ in 0..1 + n % 7 {
            car1.publish("vehicles/car1/speed", v5::QoS::AtLeastOnce, false, payload.as_bytes())
                .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_text(browser, "#deliveries tbody", |t| t.contains("telemetry/hook")).await?;
    screenshot(browser, "overview.png").await?;

    // Signing out forgets the token: the login page is back, even after a reload.
    click(browser, "#logout").await?;
    browser.refresh().await?;
    assert!(visible(browser, "#login").await?);
    assert!(!visible(browser, "#nav").await?);
    Ok(())
}
