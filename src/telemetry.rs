//! Logging set-up, and masking of phone numbers wherever they could reach a log.

use tracing_subscriber::{EnvFilter, fmt};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), output to standard error.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: a log file or pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // A second initialisation (tests running several servers in one process) is harmless.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Masks a phone number for logs and errors: keeps the first three and last four digits of the
/// digits and replaces the middle with `*` (`13800138000` → `138****8000`). Short inputs are
/// masked whole but for their last two characters, so nothing identifying survives.
pub fn mask(number: &str) -> String {
    let chars: Vec<char> = number.chars().filter(|c| !c.is_whitespace()).collect();
    let n = chars.len();
    if n >= 8 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[n - 4..].iter().collect();
        format!("{head}****{tail}")
    } else {
        let keep = n.saturating_sub(2);
        let tail: String = chars[keep..].iter().collect();
        format!("{}{tail}", "*".repeat(keep))
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_the_middle() {
        assert_eq!(mask("13800138000"), "138****8000");
        assert_eq!(mask("+8613800138000"), "+86****8000");
        assert_eq!(mask("95588"), "***88");
        assert_eq!(mask(""), "");
    }
}

/// Masks every run of seven or more digits in free text (a vendor's message may echo a number).
pub fn redact_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 7 {
            out.push_str(&mask(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod redact_tests {
    use super::redact_numbers;

    #[test]
    fn long_digit_runs_are_masked() {
        assert_eq!(
            redact_numbers("bad number 13800138000!"),
            "bad number 138****8000!"
        );
        assert_eq!(redact_numbers("code 401"), "code 401");
    }
}
