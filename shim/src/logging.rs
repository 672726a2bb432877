//! Logging through tracing-subscriber, on stderr only: stdout belongs to the app.
//!
//! Text lines read `shim: error: <step>: <cause>`, the same shape as the fatal error `main`
//! prints, so a person sees one style whatever the level. JSON is one object per line.

use std::fmt;
use std::io::Write as _;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{Log, LogFormat};

struct ShimText;

impl<S, N> FormatEvent<S, N> for ShimText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        write!(writer, "shim: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// stderr that never reports a failure. tracing-subscriber answers a failed write by printing
/// a complaint with `eprintln!`, which panics when stderr itself is the problem (a closed pipe),
/// and a panic would kill PID 1. A log line that cannot be written is lost, nothing more.
struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global subscriber. Called once, before anything is logged.
pub fn init(log: Log) {
    let builder = tracing_subscriber::fmt()
        .with_writer(|| Stderr)
        .with_max_level(log.level)
        .with_ansi(false);
    let result = match log.format {
        LogFormat::Text => builder.event_format(ShimText).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(false).try_init(),
    };
    if let Err(e) = result {
        let _ = writeln!(
            std::io::stderr(),
            "shim: warn: logging: cannot install the subscriber: {e}"
        );
    }
}
