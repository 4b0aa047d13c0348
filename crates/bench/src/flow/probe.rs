//! What the broker process spent, read from Linux `/proc/PID`: CPU seconds (user + system,
//! all threads) and peak resident memory (`VmHWM`).

use anyhow::Context;

/// One reading of the broker's counters.
pub(crate) struct Sample {
    cpu_ticks: u64,
}

/// What the broker spent between two readings, and its peak memory so far.
pub(crate) struct Usage {
    pub cpu_secs: f64,
    pub peak_rss_kb: u64,
}

impl Sample {
    pub(crate) fn read(pid: u32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat (is the broker running?)"))?;
        Ok(Sample {
            cpu_ticks: cpu_ticks(&stat)
                .with_context(|| format!("unexpected format of /proc/{pid}/stat"))?,
        })
    }

    /// Read again and subtract `before`.
    pub(crate) fn since(&self, before: &Sample) -> Usage {
        Usage {
            cpu_secs: self.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / ticks_per_sec(),
            peak_rss_kb: 0,
        }
    }
}

impl Usage {
    pub(crate) fn with_peak(mut self, pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        self.peak_rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmHWM in /proc/{pid}/status"))?;
        Ok(self)
    }
}

/// utime + stime: fields 14 and 15, counted after the parenthesised command name (which
/// may itself contain spaces or parentheses).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on every architecture
/// Linux supports today (`getconf CLK_TCK`).
fn ticks_per_sec() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_fields_after_the_command_name() {
        let stat = "42 (my (odd) broker) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(325));
    }
}
