//! Finding a weights file: the Hugging Face cache and hub (through [`dfd_hub`], with
//! huggingface_hub's environment variables), torch's own download cache, or a local path.

use std::path::PathBuf;

use anyhow::Context;

use super::source::{torchvision_file, torchvision_repo, DEFAULT_HUB_FILE};
use super::WeightsSource;

/// Environment variable of torch's home (default `~/.cache/torch`); its `hub/checkpoints` holds
/// torchvision's downloads.
pub const TORCH_HOME_VAR: &str = "TORCH_HOME";

/// Where a file came from, for the log and `--check-weights`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    /// `local file`, `Hugging Face cache`, `Hugging Face hub <url>`, `torch hub cache`.
    pub served_by: String,
}

/// The local file of `source` (None for random weights), downloading hub files unless
/// `HF_HUB_OFFLINE` is set. `hf:timm/<arch>.tv_in1k` (the default) and `torchvision:<arch>` are
/// looked up in the Hugging Face cache, then in torch's download cache
/// (`$TORCH_HOME/hub/checkpoints/<torchvision file>`), and only then downloaded.
pub fn find(source: &WeightsSource) -> anyhow::Result<Option<Found>> {
    let (repo, revision, file) = match source {
        WeightsSource::Random { .. } => return Ok(None),
        WeightsSource::File(path) => {
            anyhow::ensure!(
                path.is_file(),
                "weights file {} does not exist (or is not a file)",
                path.display()
            );
            return Ok(Some(Found {
                path: path.clone(),
                served_by: "local file".into(),
            }));
        }
        WeightsSource::Hub {
            repo,
            revision,
            file,
        } => (
            repo.clone(),
            WeightsSource::revision(revision).to_string(),
            file.clone(),
        ),
        WeightsSource::Torchvision { arch } => (
            torchvision_repo(arch),
            "main".to_string(),
            DEFAULT_HUB_FILE.to_string(),
        ),
    };
    let hub = dfd_hub::Hub::from_env().context("reading the Hugging Face hub settings")?;
    if let Some(path) = hub.cached(&repo, &revision, &file) {
        return Ok(Some(Found {
            path,
            served_by: "Hugging Face cache".into(),
        }));
    }
    if let Some(path) = torch_cache_file(&repo, &revision, &file)? {
        tracing::info!(
            "weights {source}: using torchvision's download {} (no network needed)",
            path.display()
        );
        return Ok(Some(Found {
            path,
            served_by: "torch hub cache".into(),
        }));
    }
    let url = hub.url(&repo, &revision, &file);
    tracing::info!("downloading weights {source} from {url}");
    let mut bar = None;
    let path = hub
        .get(&repo, &revision, &file, &mut |done, total| {
            let bar = bar.get_or_insert_with(|| {
                let bar = dfd_layout::cli::progress(total >> 20, "MiB");
                bar.set_message("downloading weights");
                bar
            });
            bar.set_position(done >> 20);
        })
        .with_context(|| {
            format!(
                "getting weights {source}. Other ways: pass a local .safetensors or torchvision \
                 .pth file as extract.weights, put torchvision's file in \
                 $TORCH_HOME/hub/checkpoints, or use random:<seed> for an offline demo (not \
                 pretrained)"
            )
        })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(Some(Found {
        path,
        served_by: format!("Hugging Face hub {url}"),
    }))
}

/// torchvision's own download of the weights that `hf:<repo>@<revision>/<file>` publishes, when
/// the source is timm's copy of torchvision's IMAGENET1K_V1 weights and torch's cache has it.
fn torch_cache_file(repo: &str, revision: &str, file: &str) -> anyhow::Result<Option<PathBuf>> {
    let arch = match repo
        .strip_prefix("timm/")
        .and_then(|r| r.strip_suffix(".tv_in1k"))
    {
        Some(arch) if revision == "main" && file == DEFAULT_HUB_FILE => arch,
        _ => return Ok(None),
    };
    let Some(name) = torchvision_file(arch) else {
        return Ok(None);
    };
    let path = torch_home()?.join("hub").join("checkpoints").join(name);
    Ok(path.is_file().then_some(path))
}

/// `$TORCH_HOME`, else `$XDG_CACHE_HOME/torch`, else `~/.cache/torch` (torch.hub's rule).
fn torch_home() -> anyhow::Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(home) = var(TORCH_HOME_VAR) {
        return Ok(PathBuf::from(home));
    }
    if let Some(cache) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(cache).join("torch"));
    }
    let home = var("HOME").context("finding torch's cache: neither TORCH_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("torch"))
}
