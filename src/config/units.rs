//! Parsing and printing of the config file's human units: durations (`"250ms"`, `"30s"`,
//! `"10m"`, `"1d"`, via `humantime`) and byte sizes (`"64KiB"`, `"16MiB"`, via `bytesize`).
//!
//! Sizes follow `bytesize`: `KiB`/`MiB`/`GiB` (and `Ki`, `Mi`, ...) are powers of 1024,
//! `KB`/`MB`/`GB` (and `K`, `M`, ...) powers of 1000, units are case-insensitive and a bare
//! number is bytes. Error messages are lowercase and name the value, which is never secret here.

use std::time::Duration;

use bytesize::ByteSize;

/// Parses a duration such as `"250ms"`, `"30s"`, `"10m"`, `"1d"` or `"0s"`.
///
/// # Errors
/// A lowercase message naming the value when it is not a duration with a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); expected e.g. \"250ms\", \"30s\", \"10m\"")
    })
}

/// Parses a byte size such as `"64KiB"`, `"512MiB"` or `"4096"` into bytes.
///
/// # Errors
/// A lowercase message naming the value when it is not a size, or is too large for `u64`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {text:?}; expected e.g. \"64KiB\", \"16MiB\"");
    let trimmed = text.trim();
    // bytesize reads a leading number then a unit; it would read "" or "-1" as garbage, so
    // insist on a digit first and keep our own message.
    if !trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(invalid());
    }
    let bytes = trimmed.parse::<ByteSize>().map_err(|_| invalid())?.as_u64();
    // bytesize saturates on overflow instead of failing.
    if bytes == u64::MAX {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes)
}

/// Prints a byte count in the file's own notation: the largest IEC unit that divides it
/// exactly (`268435456` → `"256MiB"`), else plain bytes (`"1000B"`).
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    UNITS
        .iter()
        .find(|(_, factor)| bytes != 0 && bytes % factor == 0)
        .map_or_else(
            || format!("{bytes}B"),
            |(unit, factor)| format!("{}{unit}", bytes / factor),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("10m", Duration::from_secs(600)),
            ("1d", Duration::from_secs(86_400)),
            ("0s", Duration::ZERO),
            ("1h 30m", Duration::from_secs(5_400)),
            (" 50ms ", Duration::from_millis(50)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations_are_rejected_with_the_value() {
        for text in ["", "30", "ten seconds", "10x", "-1s", "1.5.s"] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.starts_with("invalid duration"), "{text}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{text}: {err}");
        }
    }

    #[test]
    fn iec_sizes_are_powers_of_1024() {
        let cases = [
            ("64KiB", 64 * 1024),
            ("4KiB", 4 * 1024),
            ("512MiB", 512 * 1024 * 1024),
            ("16MiB", 16 * 1024 * 1024),
            ("8MiB", 8 * 1024 * 1024),
            ("256MiB", 256 * 1024 * 1024),
            ("1GiB", 1 << 30),
            ("1kib", 1024),
            ("2 MiB", 2 * 1024 * 1024),
            ("1.5KiB", 1536),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn si_sizes_and_bare_numbers() {
        let cases = [("1KB", 1000), ("1MB", 1_000_000), ("4096", 4096), ("0", 0)];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for text in ["", "-1KiB", "KiB", "64XB", "lots", "64 KiB extra"] {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains(&format!("{text:?}")), "{text}: {err}");
        }
        assert!(parse_size("99999999999EiB").is_err());
    }

    #[test]
    fn sizes_print_in_file_notation() {
        let cases = [
            (256 * 1024 * 1024, "256MiB"),
            (64 * 1024, "64KiB"),
            (1 << 30, "1GiB"),
            (1536, "1536B"),
            (1000, "1000B"),
            (0, "0B"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(format_size(bytes), expected);
            if bytes != 0 {
                assert_eq!(parse_size(expected), Ok(bytes));
            }
        }
    }
}
