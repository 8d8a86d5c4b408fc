//! Progress on long work: a bar (bytes, rate, ETA) on a terminal, a plain
//! line every 10% otherwise, nothing with --quiet.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct Progress(Arc<Inner>);

enum Inner {
    Hidden,
    Bar(indicatif::ProgressBar),
    Lines {
        label: String,
        total: AtomicU64,
        done: AtomicU64,
        next_tenth: AtomicU64,
        start: Instant,
    },
}

impl Progress {
    pub fn new(label: &str, quiet: bool) -> Progress {
        let inner = if quiet {
            Inner::Hidden
        } else if std::io::stderr().is_terminal() {
            // Until the total is known (a compressed base's size is known
            // only at its end), bytes and rate without a bar: never "0 B/0 B"
            // (issue 21 item 8).
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>12} {spinner} {bytes} {bytes_per_sec}",
                )
                .expect("a valid template"),
            );
            bar.set_message(label.to_string());
            Inner::Bar(bar)
        } else {
            Inner::Lines {
                label: label.to_string(),
                total: AtomicU64::new(0),
                done: AtomicU64::new(0),
                next_tenth: AtomicU64::new(1),
                start: Instant::now(),
            }
        };
        Progress(Arc::new(inner))
    }

    /// One of several progress lines shown together (one per card): on a
    /// terminal its bar is drawn by `multi`, below the others.
    pub fn in_multi(multi: &indicatif::MultiProgress, label: &str, quiet: bool) -> Progress {
        let p = Progress::new(label, quiet);
        if let Inner::Bar(b) = &*p.0 {
            multi.add(b.clone());
        }
        p
    }

    pub fn hidden() -> Progress {
        Progress(Arc::new(Inner::Hidden))
    }

    pub fn set_total(&self, total: u64) {
        match &*self.0 {
            Inner::Hidden => {}
            Inner::Bar(b) => {
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                b.set_length(total);
            }
            Inner::Lines { total: t, .. } => t.store(total, Ordering::Relaxed),
        }
    }

    pub fn advance(&self, n: u64) {
        match &*self.0 {
            Inner::Hidden => {}
            Inner::Bar(b) => b.inc(n),
            Inner::Lines {
                label,
                total,
                done,
                next_tenth,
                start,
            } => {
                let total = total.load(Ordering::Relaxed);
                let done = done.fetch_add(n, Ordering::Relaxed) + n;
                if total == 0 {
                    return;
                }
                let tenth = next_tenth.load(Ordering::Relaxed);
                if done * 10 >= total * tenth && tenth <= 10 {
                    next_tenth.store(done * 10 / total + 1, Ordering::Relaxed);
                    let secs = start.elapsed().as_secs_f64().max(1e-3);
                    let rate = done as f64 / secs;
                    let eta = (total.saturating_sub(done)) as f64 / rate.max(1.0);
                    eprintln!(
                        "{label}: {}% ({} of {}, {}/s, ETA {:.0} s)",
                        done * 100 / total,
                        human(done),
                        human(total),
                        human(rate as u64),
                        eta
                    );
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Inner::Bar(b) = &*self.0 {
            b.finish_and_clear();
        }
    }
}

/// 1536 -> "1.5 KiB".
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human(512), "512 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(2 << 30), "2.0 GiB");
    }
}
