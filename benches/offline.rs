//! Offline analysis speed: analyses 1,000,000 generated numbers per mix and prints numbers per
//! second and the process's peak memory. Side by side on the foreign mix: the `phonenumber`
//! crate (the path foreign numbers took before the compiled plan) and, when `python3` with
//! `phonenumbers` is installed, libphonenumber's Python port on the same numbers.
//!
//!     cargo bench --bench offline [-- COUNT]

use std::hint::black_box;
use std::time::Instant;

use phonecheck::number::Analyzer;

/// A deterministic generator (SplitMix64), so every run analyses the same numbers.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A Chinese number in one of the forms lists arrive in.
    fn chinese(&mut self) -> String {
        const SEGMENTS: &[&str] = &[
            "138", "139", "150", "186", "189", "199", "170", "147", "192", "166",
        ];
        let r = self.next();
        let segment = SEGMENTS[(r % SEGMENTS.len() as u64) as usize];
        let rest = (r >> 8) % 100_000_000;
        match (r >> 40) % 10 {
            0 => format!("+86 {segment}-{:04}-{:04}", rest / 10_000, rest % 10_000),
            1 => format!("0086{segment}{rest:08}"),
            2 => format!(
                "(0{}) {:04}-{:04}",
                10 + (r >> 48) % 20,
                rest / 10_000 % 10_000,
                rest % 10_000
            ),
            3 => "400-810-8888".to_owned(),
            4 => "95588".to_owned(),
            _ => format!("{segment}{rest:08}"),
        }
    }

    /// An Indonesian, Singaporean or Pakistani mobile with country code.
    fn foreign(&mut self) -> String {
        let r = self.next();
        match r % 3 {
            0 => format!("+62 812{:08}", (r >> 8) % 100_000_000),
            1 => format!("+65 9{:07}", (r >> 8) % 10_000_000),
            _ => format!("+92 300{:07}", (r >> 8) % 10_000_000),
        }
    }
}

/// A memory figure of this process from /proc/self/status (`VmHWM` peak, `VmRSS` current), MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn generate(count: usize, make: impl Fn(&mut Numbers) -> String) -> Vec<String> {
    let mut numbers = Numbers(42);
    (0..count).map(|_| make(&mut numbers)).collect()
}

fn run(name: &str, analyzer: &Analyzer, count: usize, make: impl Fn(&mut Numbers) -> String) {
    // Generate first, so that only analysis is timed.
    let inputs = generate(count, make);
    let before = status_mib("VmRSS:");
    let started = Instant::now();
    let mut valid = 0usize;
    for input in &inputs {
        if let Ok(info) = analyzer.analyze(black_box(input), "CN") {
            valid += usize::from(info.valid);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{name:<8} {count:>9} numbers in {:>6.3} s = {:>9.0} numbers/s ({valid} valid); \
         RSS with inputs {before:.1} MiB, peak {:.1} MiB",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        status_mib("VmHWM:")
    );
}

/// The same foreign numbers through the `phonenumber` crate: parse, type, validity.
fn run_crate(count: usize) {
    let inputs = generate(count, Numbers::foreign);
    let started = Instant::now();
    let mut valid = 0usize;
    for input in &inputs {
        if let Ok(n) = phonenumber::parse(None, black_box(input)) {
            black_box(n.number_type(&phonenumber::metadata::DATABASE));
            valid += usize::from(n.is_valid());
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{:<8} {count:>9} numbers in {:>6.3} s = {:>9.0} numbers/s ({valid} valid); \
         the phonenumber crate: parse, type, validity",
        "crate",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
    );
}

/// libphonenumber's Python port on the same foreign numbers, timed inside Python (imports and
/// reading the numbers excluded): parse, validity, type, carrier and place, as phonecheck does.
const PYTHON: &str = r#"
import sys, time
import phonenumbers
from phonenumbers import carrier, geocoder
numbers = sys.stdin.read().splitlines()
started = time.perf_counter()
valid = 0
for text in numbers:
    n = phonenumbers.parse(text, "CN")
    ok = phonenumbers.is_valid_number(n)
    phonenumbers.number_type(n)
    carrier.name_for_number(n, "en")
    geocoder.description_for_number(n, "en")
    valid += ok
elapsed = time.perf_counter() - started
print(f"{len(numbers)} {elapsed} {valid} {phonenumbers.__version__}")
"#;

fn run_python(count: usize) {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let inputs = generate(count, Numbers::foreign).join("\n");
    let child = Command::new("python3")
        .args(["-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        println!("python   skipped: python3 not found");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(inputs.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let fields: Vec<String> = output
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    match fields.as_slice() {
        [n, secs, valid, version] => {
            let (n, secs) = (
                n.parse::<f64>().unwrap_or(0.0),
                secs.parse::<f64>().unwrap_or(1.0),
            );
            println!(
                "{:<8} {n:>9} numbers in {secs:>6.3} s = {:>9.0} numbers/s ({valid} valid); \
                 libphonenumber {version} (Python): parse, type, validity, carrier, place",
                "python",
                n / secs,
            );
        }
        _ => println!("python   skipped: `import phonenumbers` failed (pip install phonenumbers)"),
    }
}

fn main() {
    let count = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(1_000_000);
    let analyzer = Analyzer::default();
    println!("offline analysis, {count} numbers per mix; peak RSS is the process's so far");
    run("china", &analyzer, count, Numbers::chinese);
    run("foreign", &analyzer, count / 10, Numbers::foreign);
    run_crate(count / 10);
    run_python(count / 10);
}
