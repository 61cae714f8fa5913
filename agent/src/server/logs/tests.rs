use super::*;

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn render(options: &LogOptions, lines: &[&str]) -> (String, Flow) {
    let mut renderer = Renderer::new(options);
    let mut out = Vec::new();
    let mut flow = Flow::More;
    for line in lines {
        flow = renderer.render(line.as_bytes(), &mut out);
        if flow == Flow::Done {
            break;
        }
    }
    (String::from_utf8(out).unwrap(), flow)
}

const LINES: [&str; 4] = [
    "2025-01-01T11:59:00.000000001Z stdout F first\n",
    "2025-01-01T11:59:30.5Z stderr P sec\n",
    "2025-01-01T11:59:30.6Z stderr F ond\n",
    "2025-01-01T11:59:59Z stdout F \n",
];

#[test]
fn query_parameters_become_options() {
    let cases: &[(&str, LogOptions)] = &[
        ("", LogOptions::default()),
        (
            "follow=true&previous=1&timestamps=true&tailLines=0&limitBytes=5&container=app",
            LogOptions {
                follow: true,
                previous: true,
                timestamps: true,
                tail_lines: Some(0),
                limit_bytes: Some(5),
                since: None,
            },
        ),
        (
            "sinceSeconds=60",
            LogOptions {
                since: Some("2025-01-01T11:59:00Z".parse().unwrap()),
                ..Default::default()
            },
        ),
        (
            "sinceTime=2025-01-01T11%3A00%3A00Z",
            LogOptions {
                since: Some("2025-01-01T11:00:00Z".parse().unwrap()),
                ..Default::default()
            },
        ),
        ("follow=false", LogOptions::default()),
    ];
    for (query, expected) in cases {
        assert_eq!(&LogOptions::from_query(Some(query), now()).unwrap(), expected, "{query}");
    }
}

#[test]
fn invalid_parameters_are_refused_with_the_api_wording() {
    let cases = [
        ("tailLines=-1", "tailLines: Invalid value: -1: must be greater than or equal to 0"),
        ("limitBytes=0", "limitBytes: Invalid value: 0: must be greater than 0"),
        ("sinceSeconds=0", "sinceSeconds: Invalid value: 0: must be greater than 0"),
        ("tailLines=ten", "tailLines: Invalid value: \"ten\": must be an integer"),
        ("sinceTime=yesterday", "sinceTime: Invalid value: \"yesterday\": not an RFC 3339 time"),
        (
            "sinceSeconds=5&sinceTime=2025-01-01T11:00:00Z",
            "sinceSeconds, sinceTime: Invalid value: at most one of sinceTime or sinceSeconds \
             may be specified",
        ),
    ];
    for (query, message) in cases {
        assert_eq!(LogOptions::from_query(Some(query), now()).unwrap_err(), message, "{query}");
    }
}

#[test]
fn records_are_parsed_with_their_stream_tag_and_content() {
    let record = Record::parse(b"2025-01-01T11:59:30.5Z stderr P a b  c\n").unwrap();
    assert_eq!(record.time_text, b"2025-01-01T11:59:30.5Z");
    assert_eq!(record.time, "2025-01-01T11:59:30.5Z".parse::<Timestamp>().unwrap());
    assert_eq!(record.stream, b"stderr");
    assert!(record.partial);
    assert_eq!(record.content, b"a b  c");
    let empty = Record::parse(b"2025-01-01T11:59:30Z stdout F\n").unwrap();
    assert_eq!((empty.partial, empty.content), (false, &b""[..]));
    assert!(Record::parse(b"2025-01-01T11:59:30Z stdout F:x y").is_some_and(|r| !r.partial));
    for bad in ["", "garbage", "2025-01-01T11:59:30Z stdin F x", "yesterday stdout F x"] {
        assert!(Record::parse(bad.as_bytes()).is_none(), "{bad}");
    }
}

#[test]
fn rendering_joins_parts_and_applies_timestamps_since_and_limit() {
    let all = LogOptions::default();
    assert_eq!(render(&all, &LINES), ("first\nsecond\n\n".into(), Flow::More));
    let stamped = LogOptions { timestamps: true, ..Default::default() };
    assert_eq!(render(&stamped, &LINES[..1]).0, "2025-01-01T11:59:00.000000001Z first\n");
    let since = LogOptions { since: Some("2025-01-01T11:59:30Z".parse().unwrap()), ..all.clone() };
    assert_eq!(render(&since, &LINES).0, "second\n\n");
    let limited = LogOptions { limit_bytes: Some(8), ..all.clone() };
    assert_eq!(render(&limited, &LINES), ("first\nse".into(), Flow::Done));
    let exact = LogOptions { limit_bytes: Some(6), ..all.clone() };
    assert_eq!(render(&exact, &LINES), ("first\n".into(), Flow::Done));
    assert_eq!(render(&all, &["not a record\n", LINES[0]]).0, "first\n");
}

async fn tail(text: &str, lines: u64) -> u64 {
    let mut file = std::io::Cursor::new(text.as_bytes().to_vec());
    tail_start(&mut file, text.len() as u64, lines).await.unwrap()
}

#[tokio::test]
async fn the_tail_begins_after_the_newline_before_the_last_lines() {
    let text = "a\nbb\nccc\n";
    let cases = [(0, 9), (1, 5), (2, 2), (3, 0), (10, 0)];
    for (lines, start) in cases {
        assert_eq!(tail(text, lines).await, start, "{lines}");
    }
    // A last line still being written counts as a line.
    assert_eq!(tail("a\nbb\ncc", 1).await, 5);
    assert_eq!(tail("", 3).await, 0);
    let long = "x\n".repeat(10_000);
    assert_eq!(tail(&long, 3).await, long.len() as u64 - 6);
}

#[tokio::test]
async fn a_followed_file_is_read_until_the_container_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    std::fs::write(&path, LINES[0]).unwrap();
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (out, mut received) = mpsc::channel(16);
    let options = LogOptions { follow: true, ..Default::default() };
    let task = {
        let (path, running) = (path.clone(), running.clone());
        tokio::spawn(async move {
            let running = || {
                let running = running.clone();
                async move { running.load(std::sync::atomic::Ordering::SeqCst) }
            };
            send(&path, &options, running, out).await
        })
    };
    assert_eq!(received.recv().await.unwrap(), "first\n");
    // A record written in two pieces is printed once it is whole.
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, b"2025-01-01T11:59:01Z stdout F la").unwrap();
    tokio::time::sleep(FOLLOW_POLL * 2).await;
    std::io::Write::write_all(&mut file, b"ter\n").unwrap();
    assert_eq!(received.recv().await.unwrap(), "later\n");
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    std::io::Write::write_all(&mut file, LINES[3].as_bytes()).unwrap();
    assert_eq!(received.recv().await.unwrap(), "\n");
    assert!(received.recv().await.is_none(), "the stream ends after the exit");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_follow_the_tail_is_sent_and_the_stream_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    std::fs::write(&path, LINES.concat()).unwrap();
    let (out, mut received) = mpsc::channel(16);
    let options = LogOptions { tail_lines: Some(2), ..Default::default() };
    send(&path, &options, || async { true }, out).await.unwrap();
    let mut text = String::new();
    while let Some(chunk) = received.recv().await {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(text, "ond\n\n");
}
