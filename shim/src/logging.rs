//! Logging through tracing-subscriber, on stderr only: stdout belongs to the app.
//!
//! Text lines read `shim: error: <step>: <cause>`, the same shape as the fatal error `main`
//! prints, so a person sees one style whatever the level. JSON is one object per line.

use std::fmt;

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

/// Installs the global subscriber. Called once, before anything is logged.
pub fn init(log: Log) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(log.level)
        .with_ansi(false);
    let result = match log.format {
        LogFormat::Text => builder.event_format(ShimText).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(false).try_init(),
    };
    if let Err(e) = result {
        eprintln!("shim: warn: logging: cannot install the subscriber: {e}");
    }
}
