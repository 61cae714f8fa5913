//! Container logs as kubelet serves them (`GET /containerLogs/<ns>/<pod>/<container>`): the
//! runtime writes each container's output to a file in the CRI log format, one record per
//! line (`<RFC 3339 time> <stdout|stderr> <P|F> <content>`, `P` for a part of a longer line);
//! this module turns such a file into what `kubectl logs` prints.
//!
//! Invariants:
//! - The options are validated before anything is read, with the API's wording.
//! - A record is printed whole or not at all, except where `limitBytes` cuts it; a record
//!   still being written (no newline yet) waits for its end.
//! - Following stops once the container has exited and its file is read to the end, or when
//!   the reader goes away.

use std::future::Future;
use std::io::SeekFrom;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

#[cfg(test)]
mod tests;

/// How often a followed file is read again when it had nothing new.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How often a followed container is asked whether it still runs, while its file is quiet.
const RUNNING_CHECK: Duration = Duration::from_secs(1);
/// The block a file is read backwards in to find its last lines.
const TAIL_BLOCK: u64 = 8192;

/// What the reader asked for, from `kubectl logs` flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `-f`: keep reading while the container runs.
    pub follow: bool,
    /// `-p`: the previous instance of the container.
    pub previous: bool,
    /// `--timestamps`: each line begins with the time it was written.
    pub timestamps: bool,
    /// `--tail`: only the last lines.
    pub tail_lines: Option<u64>,
    /// `--since` / `--since-time`: only what was written from then on.
    pub since: Option<Timestamp>,
    /// `--limit-bytes`: at most this many bytes.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the options from a query string (`follow=true&tailLines=10`…), `sinceSeconds`
    /// counting back from `now`. Unknown parameters are ignored, as kubelet does.
    pub fn from_query(query: Option<&str>, now: Timestamp) -> Result<LogOptions, String> {
        let mut options = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "follow" => options.follow = flag(&value),
                "previous" => options.previous = flag(&value),
                "timestamps" => options.timestamps = flag(&value),
                "tailLines" => options.tail_lines = Some(at_least(&key, &value, 0)?),
                "limitBytes" => options.limit_bytes = Some(at_least(&key, &value, 1)?),
                "sinceSeconds" => since_seconds = Some(at_least(&key, &value, 1)?),
                "sinceTime" => {
                    let time = value.parse::<Timestamp>().map_err(|_| {
                        format!("sinceTime: Invalid value: {value:?}: not an RFC 3339 time")
                    })?;
                    since_time = Some(time);
                }
                _ => {}
            }
        }
        options.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("sinceSeconds, sinceTime: Invalid value: at most one of sinceTime \
                            or sinceSeconds may be specified"
                    .into())
            }
            (Some(seconds), None) => {
                let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
                Some(now.checked_sub(SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MIN))
            }
            (None, time) => time,
        };
        Ok(options)
    }
}

fn flag(value: &str) -> bool {
    matches!(value, "true" | "1")
}

/// An integer parameter of at least `minimum` (0 or 1), refused as the API validation words it.
fn at_least(key: &str, value: &str, minimum: u64) -> Result<u64, String> {
    let bound = if minimum == 0 { "greater than or equal to 0" } else { "greater than 0" };
    match value.parse::<i64>() {
        Ok(n) => u64::try_from(n)
            .ok()
            .filter(|n| *n >= minimum)
            .ok_or_else(|| format!("{key}: Invalid value: {n}: must be {bound}")),
        Err(_) => Err(format!("{key}: Invalid value: {value:?}: must be an integer")),
    }
}

/// One record of a CRI log file.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The time as written (RFC 3339 with nanoseconds), printed as is with `--timestamps`.
    pub time_text: &'a [u8],
    pub time: Timestamp,
    /// `stdout` or `stderr`.
    pub stream: &'a [u8],
    /// A part of a line longer than the runtime's buffer; the line goes on in the next record.
    pub partial: bool,
    pub content: &'a [u8],
}

impl<'a> Record<'a> {
    /// Parses one line of a CRI log file (with or without its newline).
    pub fn parse(line: &'a [u8]) -> Option<Record<'a>> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let mut fields = line.splitn(4, |b| *b == b' ');
        let time_text = fields.next()?;
        let time = std::str::from_utf8(time_text).ok()?.parse::<Timestamp>().ok()?;
        let stream = fields.next().filter(|s| *s == b"stdout" || *s == b"stderr")?;
        // The tag is `P` or `F`, possibly followed by `:`-separated others.
        let tag = fields.next()?;
        let partial = tag.split(|b| *b == b':').next() == Some(b"P");
        let content = fields.next().unwrap_or_default();
        Some(Record { time_text, time, stream, partial, content })
    }
}

/// Whether to go on after a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    More,
    /// `limitBytes` is reached.
    Done,
}

/// Turns records into output, applying `since`, `timestamps` and `limitBytes`.
#[derive(Debug)]
pub struct Renderer {
    timestamps: bool,
    since: Option<Timestamp>,
    remaining: Option<u64>,
}

impl Renderer {
    pub fn new(options: &LogOptions) -> Renderer {
        Renderer {
            timestamps: options.timestamps,
            since: options.since,
            remaining: options.limit_bytes,
        }
    }

    /// Appends what `line` prints to `out`. A line that is not a record is skipped.
    pub fn render(&mut self, line: &[u8], out: &mut Vec<u8>) -> Flow {
        if self.remaining == Some(0) {
            return Flow::Done;
        }
        let Some(record) = Record::parse(line) else {
            return Flow::More;
        };
        if self.since.is_some_and(|since| record.time < since) {
            return Flow::More;
        }
        let start = out.len();
        if self.timestamps {
            out.extend_from_slice(record.time_text);
            out.push(b' ');
        }
        out.extend_from_slice(record.content);
        if !record.partial {
            out.push(b'\n');
        }
        let Some(remaining) = &mut self.remaining else {
            return Flow::More;
        };
        let written = (out.len() - start) as u64;
        if written >= *remaining {
            out.truncate(start + usize::try_from(*remaining).unwrap_or(usize::MAX));
            *remaining = 0;
            return Flow::Done;
        }
        *remaining -= written;
        Flow::More
    }
}

/// Where the last `lines` lines of `file` (of `len` bytes) begin, read backwards in blocks.
/// The newline ending the file does not begin an empty last line.
pub async fn tail_start<F>(file: &mut F, len: u64, lines: u64) -> std::io::Result<u64>
where
    F: AsyncRead + AsyncSeek + Unpin,
{
    if lines == 0 {
        return Ok(len);
    }
    let mut seen = 0;
    let mut end = len;
    let mut block = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(TAIL_BLOCK);
        block.resize(usize::try_from(end - start).unwrap_or(0), 0);
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(&mut block).await?;
        for (index, byte) in block.iter().enumerate().rev() {
            let offset = start + index as u64;
            if *byte != b'\n' || offset + 1 == len {
                continue;
            }
            seen += 1;
            if seen == lines {
                return Ok(offset + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// Sends what the log file at `path` prints under `options` to `out`, following it while
/// `running` says the container runs. Returns when done or when `out` is closed.
pub async fn send<F, Fut>(
    path: &Path,
    options: &LogOptions,
    running: F,
    out: mpsc::Sender<Bytes>,
) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut file = tokio::fs::File::open(path).await?;
    if let Some(lines) = options.tail_lines {
        let len = file.metadata().await?.len();
        let start = tail_start(&mut file, len, lines).await?;
        file.seek(SeekFrom::Start(start)).await?;
    }
    let mut reader = BufReader::new(file);
    let mut renderer = Renderer::new(options);
    let mut line = Vec::new();
    let mut exited = false;
    let mut checked: Option<Instant> = None;
    loop {
        reader.read_until(b'\n', &mut line).await?;
        if line.ends_with(b"\n") {
            let mut chunk = Vec::new();
            let flow = renderer.render(&line, &mut chunk);
            line.clear();
            if !chunk.is_empty() && out.send(Bytes::from(chunk)).await.is_err() {
                return Ok(());
            }
            if flow == Flow::Done {
                return Ok(());
            }
            continue;
        }
        // The end of what is written so far; `line` keeps a record still being written.
        if !options.follow || exited {
            return Ok(());
        }
        if checked.is_none_or(|at| at.elapsed() >= RUNNING_CHECK) {
            checked = Some(Instant::now());
            // Read once more after the exit: what the container wrote last is in the file.
            exited = !running().await;
            if exited {
                continue;
            }
        }
        tokio::select! {
            () = out.closed() => return Ok(()),
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
    }
}
