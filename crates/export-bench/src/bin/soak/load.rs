//! The soak's load: steady GETs, runs created and followed, SSE subscribers.

use super::*;

/// The steady GETs: one per tick, each in a task of its own.
pub(super) async fn steady_load(shared: Arc<Shared>, rate: f64, max_in_flight: usize) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    let mut turn = 0u64;
    while !shared.stopped() {
        ticker.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            shared.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let base = &shared.base_url;
        let newest = lock(&shared.runs).last().cloned();
        let url = match (turn % 4, newest) {
            (0, _) => format!("{base}/export-center/runs?limit=20"),
            (1, Some(run)) => format!("{base}/export-center/runs/{run}"),
            (2, _) | (1, None) => format!("{base}/export-center/profiles"),
            _ => format!("{base}/export-center/runs?status=succeeded&limit=5"),
        };
        turn += 1;
        let shared = shared.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            match shared.call(Method::GET, &url, |request| request).await {
                Ok((status, _, _)) if status == reqwest::StatusCode::OK => {
                    let micros = started.elapsed().as_micros().max(1) as u64;
                    let _ = lock(&shared.window).record(micros);
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                }
                Ok((status, _, body)) => {
                    shared.fail("status", format!("GET {url}: {status}: {}", excerpt(&body)))
                }
                Err(err) => shared.fail("transport", format!("GET {url}: {err:#}")),
            }
            drop(permit);
        });
    }
}

/// Creates a run every `interval` until stopped, then waits for those under way.
pub(super) async fn create_runs(
    shared: Arc<Shared>,
    profile_id: String,
    interval: Duration,
    replay_every: u64,
    download_every: u64,
    timeout: Duration,
) {
    let url = format!("{}/export-center/runs", shared.base_url);
    let body = json!({ "profileId": profile_id });
    // Keys unique to this soak, should it run twice against one database.
    let prefix = stats::unix_micros();
    let mut ticker = tokio::time::interval(interval);
    let mut trackers = JoinSet::new();
    let mut count = 0u64;
    while !shared.stopped() {
        ticker.tick().await;
        if shared.stopped() {
            break;
        }
        count += 1;
        let key = format!("soak-{prefix}-{count}");
        let first = match create(&shared, &url, &body, &key).await {
            Ok((run_id, _)) => run_id,
            Err(err) => {
                shared.fail("create", format!("{err:#}"));
                continue;
            }
        };
        shared.created.fetch_add(1, Ordering::Relaxed);
        lock(&shared.runs).push(first.clone());
        if count.is_multiple_of(replay_every) {
            match create(&shared, &url, &body, &key).await {
                Ok((again, true)) if again == first => {
                    shared.replays.fetch_add(1, Ordering::Relaxed);
                }
                Ok((again, replayed)) => shared.fail(
                    "idempotency",
                    format!("key {key}: first {first}, then {again} (replayed header: {replayed})"),
                ),
                Err(err) => shared.fail("idempotency", format!("key {key}: {err:#}")),
            }
        }
        trackers.spawn(follow_run(
            shared.clone(),
            first,
            count
                .is_multiple_of(download_every)
                .then_some(count / download_every),
            timeout,
        ));
    }
    while trackers.join_next().await.is_some() {}
}

/// POST /export-center/runs with an Idempotency-Key: the run id and whether the answer
/// was a replay.
pub(super) async fn create(
    shared: &Shared,
    url: &str,
    body: &Value,
    key: &str,
) -> anyhow::Result<(String, bool)> {
    let (status, headers, answer) = shared
        .call(Method::POST, url, |request| {
            request.header("idempotency-key", key).json(body)
        })
        .await?;
    if status != reqwest::StatusCode::ACCEPTED {
        bail!("POST {url}: {status}: {}", excerpt(&answer));
    }
    let json: Value = serde_json::from_slice(&answer).context("the run creation answer")?;
    let run_id = json["runId"]
        .as_str()
        .ok_or_else(|| anyhow!("no runId in {}", excerpt(&answer)))?;
    let replayed = headers
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true");
    Ok((run_id.to_owned(), replayed))
}

/// Polls a run until it ends; it must succeed. With `download`, one of its outputs (the
/// n-th, in turn) is downloaded through its signed URL and checked.
pub(super) async fn follow_run(
    shared: Arc<Shared>,
    run_id: String,
    download: Option<u64>,
    timeout: Duration,
) {
    let url = format!("{}/export-center/runs/{run_id}", shared.base_url);
    let deadline = Instant::now() + timeout;
    let run = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match shared.get_json(&url).await {
            Ok(run) if matches!(run["status"].as_str(), Some("queued" | "running")) => {
                if Instant::now() > deadline {
                    shared.fail(
                        "run stuck",
                        format!("{run_id} still {} after {timeout:?}", run["status"]),
                    );
                    return;
                }
            }
            Ok(run) => break run,
            Err(err) => {
                shared.fail("status", format!("{err:#}"));
                if Instant::now() > deadline {
                    return;
                }
            }
        }
    };
    if run["status"] != "succeeded" {
        shared.fail(
            "run failed",
            format!("{run_id}: {} {}", run["status"], run["errors"]),
        );
        return;
    }
    shared.succeeded.fetch_add(1, Ordering::Relaxed);
    let Some(turn) = download else { return };
    let outputs = run["outputs"].as_array().cloned().unwrap_or_default();
    if outputs.is_empty() {
        shared.fail("download", format!("{run_id} has no outputs"));
        return;
    }
    let output = &outputs[turn as usize % outputs.len()];
    match download_output(&shared, output).await {
        Ok(()) => {
            shared.downloads.fetch_add(1, Ordering::Relaxed);
        }
        Err(err) => shared.fail("download", format!("{run_id}: {err:#}")),
    }
}

/// Downloads one output through its signed URL (no token); its size and SHA-256 must be
/// the ones the run status gives.
pub(super) async fn download_output(shared: &Shared, output: &Value) -> anyhow::Result<()> {
    let link = output["url"]
        .as_str()
        .ok_or_else(|| anyhow!("an output without url: {output}"))?;
    let url = if link.starts_with('/') {
        format!("{}{link}", shared.base_url)
    } else {
        link.to_owned()
    };
    let response = shared.plain.get(&url).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    if status != reqwest::StatusCode::OK {
        bail!("GET {}: {status}: {}", output["id"], excerpt(&body));
    }
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    if Some(digest.as_str()) != output["sha256"].as_str()
        || Some(body.len() as u64) != output["bytes"].as_u64()
    {
        bail!(
            "{} {}: {} bytes {digest}, the status says {} bytes {}",
            output["type"],
            output["id"],
            body.len(),
            output["bytes"],
            output["sha256"]
        );
    }
    Ok(())
}

/// An SSE subscriber: follows the newest run not followed yet, leaving and rejoining,
/// until stopped.
pub(super) async fn subscriber(shared: Arc<Shared>, dwell: std::ops::Range<u64>, timeout: Duration) {
    let mut followed: Option<String> = None;
    while !shared.stopped() {
        let newest = lock(&shared.runs).last().cloned();
        match newest {
            Some(run_id) if followed.as_ref() != Some(&run_id) => {
                follow_events(&shared, &run_id, &dwell, timeout).await;
                followed = Some(run_id);
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Reads one run's events to the terminal one in sessions of a random length, each
/// rejoining with `Last-Event-ID`; every id must follow the last one seen.
pub(super) async fn follow_events(
    shared: &Shared,
    run_id: &str,
    dwell: &std::ops::Range<u64>,
    timeout: Duration,
) {
    let url = format!("{}/export-center/runs/{run_id}/events", shared.base_url);
    let deadline = Instant::now() + timeout;
    let mut last = 0i64;
    // The server's nonce, once it has asked for one (`use_dpop_nonce`), and whether the
    // last attempt was refused with one (the retry with it must then succeed).
    let mut nonce: Option<String> = None;
    let mut challenged = false;
    loop {
        if Instant::now() > deadline {
            shared.fail(
                "sse",
                format!("{run_id}: no terminal event after {timeout:?} (last id {last})"),
            );
            return;
        }
        let proof = shared.credentials.proof_with_nonce("GET", &url, nonce.as_deref());
        let mut request = match shared
            .credentials
            .request(Method::GET, &url, proof.as_deref(), None)
        {
            Ok(request) => request,
            Err(err) => {
                shared.fail("sse", format!("{err:#}"));
                return;
            }
        };
        let headers = request.headers_mut();
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/event-stream"),
        );
        if last > 0 {
            headers.insert("last-event-id", http::HeaderValue::from(last));
        }
        let mut stream = match EventStream::open(shared.server, None, &request).await {
            Ok(stream) => stream,
            Err(err) => {
                // A nonce challenge is answered once, at once, as the DPoP client does.
                let offered = err.downcast_ref::<Refused>().and_then(|refused| {
                    (refused.status == 401 && refused.body.contains("nonce"))
                        .then(|| refused.nonce.clone())
                        .flatten()
                });
                if let (Some(offered), false) = (offered, challenged) {
                    shared.nonce_challenges.fetch_add(1, Ordering::Relaxed);
                    nonce = Some(offered);
                    challenged = true;
                    continue;
                }
                challenged = false;
                shared.fail("sse open", format!("{run_id}: {err:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        challenged = false;
        shared.sse_joins.fetch_add(1, Ordering::Relaxed);
        if last > 0 {
            shared.sse_rejoins.fetch_add(1, Ordering::Relaxed);
        }
        // A session ends after a random time or a random number of events, whichever
        // comes first: a run of the soak's small profile sends its dozen events within
        // a fraction of a second, so time alone would rarely split one.
        let (stay, quota) = {
            let mut rng = rand::thread_rng();
            (
                Duration::from_millis(rng.gen_range(dwell.clone())),
                rng.gen_range(1..=6u32),
            )
        };
        let leave_at = tokio::time::Instant::now() + stay;
        let mut buffer = Vec::with_capacity(4096);
        let mut ended = false;
        let mut taken = 0;
        'session: loop {
            while let Some(message) = event_stream::next_message(&mut buffer) {
                let Some(id) = message.id else { continue };
                if id == last + 1 {
                    shared.sse_events.fetch_add(1, Ordering::Relaxed);
                } else if id <= last {
                    shared.fail("sse duplicate", format!("{run_id}: id {id} after {last}"));
                } else {
                    shared.fail("sse missed", format!("{run_id}: id {id} after {last}"));
                }
                last = last.max(id);
                ended |= message.is_terminal();
                taken += 1;
                if taken >= quota && !ended {
                    break 'session;
                }
            }
            if ended {
                break;
            }
            match tokio::time::timeout_at(leave_at, stream.read_body(&mut buffer)).await {
                Ok(Ok(true)) => {}
                // Left (the dwell is over), or the server ended the stream (an idle
                // close): rejoin.
                Err(_) | Ok(Ok(false)) => break,
                Ok(Err(err)) => {
                    shared.fail("sse stream", format!("{run_id}: {err:#}"));
                    break;
                }
            }
        }
        drop(stream);
        if ended {
            shared.sse_runs.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let pause = rand::thread_rng().gen_range(0..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
