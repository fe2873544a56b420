//! Command-line plumbing every stage shares: common flags, logging, progress bars, markers.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::atomic::{is_disk_full, DiskFull};
use crate::config::{pipeline_name, DeviceSpec, PipelineConfig};
use crate::paths::{DataRoot, RunDir};

/// Flags of every stage: which pipeline, where the data lives, which run.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// Pipeline config (TOML); its file stem names the run directory (`runs/<stem>/...`).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Root of the on-disk layout.
    #[arg(long, env = "DFD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Run identifier under `runs/<pipeline>/`.
    #[arg(long, default_value = "main")]
    pub run_id: String,
}

/// What [`CommonArgs::load`] gives a stage.
pub struct Context {
    pub config: PipelineConfig,
    pub pipeline: String,
    pub data: DataRoot,
    pub run: RunDir,
}

impl CommonArgs {
    /// Reads the pipeline config and resolves the data root and run directory, and removes the
    /// temporary files that dead processes of this host left in the run directory
    /// ([`crate::atomic::remove_stale_tmp_tree`]).
    pub fn load(&self) -> Result<Context> {
        let config = PipelineConfig::load(&self.config)?;
        let pipeline = pipeline_name(&self.config)?;
        let data = DataRoot::new(&self.data_dir);
        let run = data.run(&pipeline, &self.run_id);
        crate::atomic::remove_stale_tmp_tree(run.path())?;
        Ok(Context {
            config,
            pipeline,
            data,
            run,
        })
    }

    /// The command line that runs `binary` (e.g. `dfd-extract`) on the same pipeline and data
    /// root, and on the same run when `with_run`: what an error names as the way to rebuild a
    /// file that stage makes.
    pub fn command(&self, binary: &str, with_run: bool) -> String {
        let mut line = format!(
            "{binary} --config {} --data-dir {}",
            self.config.display(),
            self.data_dir.display()
        );
        if with_run {
            line.push_str(&format!(" --run-id {}", self.run_id));
        }
        line
    }
}

/// `--device`, for the stages that run the model (extract, train, evaluate, predict): one rule for
/// all of them. It overrides `extract.device` of the pipeline (or of the run's pinned config); the
/// device is not part of the pinned-config comparison ([`PipelineConfig::settings`]), so a run
/// may be resumed or evaluated on another device, while feature directories record the device
/// class that computed them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DeviceArg {
    /// Device of the model: `cpu`, `cuda` or `cuda:N` (needs a build with the `cuda` feature);
    /// overrides `extract.device`.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
}

impl DeviceArg {
    /// `config` with `extract.device` replaced by `--device` when given, then checked again
    /// where the device matters ([`PipelineConfig::check_compute`]).
    pub fn apply(&self, config: &mut PipelineConfig) -> Result<()> {
        if let Some(device) = &self.device {
            config.extract.device = device.clone();
        }
        config.check_compute()
    }
}

/// `--shard-index i --shard-count n`: this process does the work items `j` with `j % n == i`.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct SliceArgs {
    /// Index of this process among `--shard-count` processes sharing the work (0-based).
    #[arg(long, default_value_t = 0)]
    pub shard_index: usize,
    /// Number of processes sharing the work (e.g. a Slurm job array's size).
    #[arg(long, default_value_t = 1)]
    pub shard_count: usize,
}

impl SliceArgs {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.shard_count >= 1, "--shard-count must be at least 1");
        ensure!(
            self.shard_index < self.shard_count,
            "--shard-index {} must be below --shard-count {}",
            self.shard_index,
            self.shard_count
        );
        Ok(())
    }

    /// Whether work item `j` (a shard number) belongs to this process.
    pub fn owns(&self, j: usize) -> bool {
        j % self.shard_count == self.shard_index
    }

    /// True for a single process doing everything.
    pub fn is_whole(&self) -> bool {
        self.shard_count == 1
    }
}

/// Logging to stderr, filtered by `RUST_LOG` (default `info`). Colours (ANSI escape codes) only
/// when stderr is a terminal and `NO_COLOR` is unset or empty, so a log redirected to a file or
/// collected by Slurm is plain text.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours_wanted())
        .with_target(false)
        .try_init();
}

/// True when stderr is a terminal and `NO_COLOR` (<https://no-color.org>) is unset or empty.
fn colours_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Environment variable: seconds between the progress lines a long stage logs when stderr is not
/// a terminal (default [`DEFAULT_PROGRESS_INTERVAL`]).
pub const PROGRESS_INTERVAL_VAR: &str = "DFD_PROGRESS_INTERVAL";
/// Seconds between progress lines when [`PROGRESS_INTERVAL_VAR`] is unset.
pub const DEFAULT_PROGRESS_INTERVAL: f64 = 30.0;

/// The progress of a long step over `len` items of `unit` (e.g. "img"). On a terminal: a bar with
/// rate and ETA. Otherwise (a log file, Slurm, CI): no bar, but a plain log line
/// `progress: <message> <done>/<total> <unit>, <rate> <unit>/s, ETA <time>` every
/// `DFD_PROGRESS_INTERVAL` seconds until the bar is finished or dropped.
pub fn progress(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        let bar = ProgressBar::hidden();
        bar.set_length(len);
        spawn_progress_lines(&bar, unit.to_string(), progress_interval());
        return bar;
    }
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}})"
    );
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// [`PROGRESS_INTERVAL_VAR`] in seconds; an unset, unparsable or non-positive value gives the
/// default (a warning says so for a bad value).
fn progress_interval() -> Duration {
    let text = match std::env::var(PROGRESS_INTERVAL_VAR) {
        Ok(text) => text,
        Err(_) => return Duration::from_secs_f64(DEFAULT_PROGRESS_INTERVAL),
    };
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
        _ => {
            tracing::warn!(
                "{PROGRESS_INTERVAL_VAR}={text:?} is not a positive number of seconds: using {DEFAULT_PROGRESS_INTERVAL}"
            );
            Duration::from_secs_f64(DEFAULT_PROGRESS_INTERVAL)
        }
    }
}

/// A thread that logs `bar`'s state every `interval` while it lives and is not finished.
fn spawn_progress_lines(bar: &ProgressBar, unit: String, interval: Duration) {
    let weak = bar.downgrade();
    let poll = interval.min(Duration::from_millis(200));
    std::thread::spawn(move || {
        let mut next = Instant::now() + interval;
        loop {
            std::thread::sleep(poll);
            let Some(bar) = weak.upgrade() else { return };
            if bar.is_finished() {
                return;
            }
            if Instant::now() >= next {
                tracing::info!("progress: {}", progress_line(&bar, &unit));
                next = Instant::now() + interval;
            }
        }
    });
}

/// `<message> <done>/<total> <unit>, <rate> <unit>/s, ETA <time>` for a bar.
fn progress_line(bar: &ProgressBar, unit: &str) -> String {
    let (done, total) = (bar.position(), bar.length().unwrap_or(0));
    let rate = bar.per_sec();
    let eta = if rate > 0.0 && total >= done {
        human_duration((total - done) as f64 / rate)
    } else {
        "unknown".to_string()
    };
    let message = bar.message();
    let lead = if message.is_empty() {
        String::new()
    } else {
        format!("{message} ")
    };
    format!("{lead}{done}/{total} {unit}, {rate:.1} {unit}/s, ETA {eta}")
}

/// Seconds as `45 s`, `12 min 5 s` or `3 h 20 min`.
fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// An optional value as a log shows it: the value (a number to 4 decimals), or `n/a`.
pub fn plain<T: Plain>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| v.plain())
}

/// A value written for people (see [`plain`]).
pub trait Plain {
    fn plain(&self) -> String;
}

impl Plain for f64 {
    fn plain(&self) -> String {
        format!("{self:.4}")
    }
}

impl<T: std::fmt::Display> Plain for &T {
    fn plain(&self) -> String {
        self.to_string()
    }
}

/// Items as a log shows them: `0, 1, 2`.
pub fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes a stage's completion marker for the run (the Makefile's target).
pub fn mark_done(run: &RunDir, stage: &str, summary: &serde_json::Value) -> Result<()> {
    crate::atomic::write_json_atomic(&run.stage_marker(stage), summary)
}

/// True when the completion marker at `marker` (a stage marker, or another marker of the
/// layout such as [`crate::paths::EVAL_ON_MARKER`]) exists and records `inputs` (a hash of
/// everything the outputs depend on) under the key `"inputs"`: the outputs are up to date.
pub fn marker_records(marker: &std::path::Path, inputs: &str) -> bool {
    crate::atomic::read_json::<serde_json::Value>(marker)
        .is_ok_and(|m| m.get("inputs").and_then(|v| v.as_str()) == Some(inputs))
}

/// A stage's exit: success, or its error printed on one line as `<stage>: error: <message>`
/// ([`error_message`]) and a failure status.
pub fn exit(stage: &str, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{stage}: error: {}", error_message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The one message for `e`: a full disk ([`DiskFull`], or any ENOSPC/EDQUOT I/O error in the
/// chain) says so and what to do, without the layers of context above it; any other error is
/// its chain of contexts, outermost first.
pub fn error_message(e: &anyhow::Error) -> String {
    if let Some(full) = e.downcast_ref::<DiskFull>() {
        return full.to_string();
    }
    let io = e
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .filter(|io| is_disk_full(io));
    match io {
        Some(_) => format!(
            "the disk (or your quota) is full: {e:#}. Free some space, then rerun the same \
             command: it resumes where it stopped"
        ),
        None => format!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_plainly() {
        assert_eq!(human_duration(44.6), "45 s");
        assert_eq!(human_duration(725.0), "12 min 5 s");
        assert_eq!(human_duration(12_000.0), "3 h 20 min");
    }

    #[test]
    fn a_progress_line_says_done_total_rate_and_eta() {
        let bar = ProgressBar::hidden();
        bar.set_length(10);
        bar.set_position(4);
        bar.set_message("features");
        let line = progress_line(&bar, "img");
        assert!(line.starts_with("features 4/10 img, "), "{line}");
        assert!(line.contains(" img/s, ETA "), "{line}");
    }

    #[test]
    fn a_full_disk_is_one_message() {
        let full = crate::atomic::write_error(
            std::io::Error::from_raw_os_error(libc::ENOSPC),
            std::path::Path::new("/d/manifest.csv"),
            String::new,
        )
        .context("writing the manifest");
        let msg = error_message(&full);
        assert!(
            msg.starts_with("no space left to write /d/manifest.csv"),
            "{msg}"
        );
        let plain = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::ENOSPC))
            .context("saving weights");
        assert!(error_message(&plain).starts_with("the disk (or your quota) is full: saving"));
        let other = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_message(&other), "outer: inner");
    }
}
