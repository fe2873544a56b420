//! Another data set scored by a trained run (`dfd-evaluate --on X`): what X names, and the
//! pipeline config that prepares all of it with the run's settings.
//!
//! X is either a pipeline file, whose `[dataset]` section is used (its `source` taken against the
//! data directory, like any pipeline's), or a folder with the class sub-folders of the run's
//! `dataset.classes`. Its images are prepared and extracted under the name `<name>@all`
//! ([`WHOLE`]) with every image in the test split and no augmented copies, so they never mix
//! with a normal preparation of a data set called `<name>`. The run's size, backbone, cut and
//! storage dtype apply unchanged, so X's features are exactly what the run's heads read.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::{DatasetConfig, PipelineConfig};
use crate::paths::path_safe;

/// Suffix of a data set prepared whole for evaluation: `prepared/<name>@all/`,
/// `features/<name>@all/`.
pub const WHOLE: &str = "@all";

/// X as the run will see it.
#[derive(Clone, Debug, PartialEq)]
pub struct OtherDataset {
    /// X's name: the pipeline's `dataset.name`, or the folder's name (characters other than
    /// letters, digits, `.`, `_` and `-` replaced by `-`). It names `eval/<name>/`.
    pub name: String,
    /// The run's config with X's `[dataset]` (named `<name>@all`), `split.test_fraction = 1`
    /// (every image in the test split) and `preprocess.copies = 0`.
    pub config: PipelineConfig,
}

impl OtherDataset {
    /// Reads `on` (a pipeline file or a folder, see the module docs) against the run's config.
    pub fn resolve(on: &Path, run: &PipelineConfig) -> Result<Self> {
        let (name, dataset) = if on.is_dir() {
            let folder = std::path::absolute(on)
                .with_context(|| format!("--on {}: resolving the folder", on.display()))?;
            let name = folder
                .file_name()
                .and_then(|n| n.to_str())
                .map(path_safe)
                .filter(|n| !n.is_empty())
                .with_context(|| format!("--on {}: the folder has no usable name", on.display()))?;
            let missing: Vec<&str> = run
                .dataset
                .classes
                .keys()
                .filter(|class| !folder.join(class).is_dir())
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                bail!(
                    "--on {}: the folder lacks the class sub-folder(s) {} of the run's \
                     dataset.classes; give a folder with {}, or a pipeline file whose [dataset] \
                     names its own classes",
                    on.display(),
                    missing.join(", "),
                    run.dataset
                        .classes
                        .iter()
                        .map(|(c, l)| format!("{c}/ (label {l})"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                );
            }
            let dataset = DatasetConfig {
                name: name.clone(),
                source: folder,
                classes: run.dataset.classes.clone(),
            };
            (name, dataset)
        } else if on.is_file() {
            let other = PipelineConfig::load(on)
                .with_context(|| format!("--on {}: reading its [dataset]", on.display()))?;
            (other.dataset.name.clone(), other.dataset)
        } else {
            bail!(
                "--on {}: no such folder or pipeline file (give a folder with class sub-folders, \
                 or a pipeline file whose [dataset] section names the images)",
                on.display()
            );
        };
        let mut config = run.clone();
        config.dataset = DatasetConfig {
            name: format!("{name}{WHOLE}"),
            ..dataset
        };
        config.split.test_fraction = 1.0;
        config.preprocess.copies = 0;
        config.study = Default::default();
        Ok(Self { name, config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_config() -> PipelineConfig {
        let mut cfg = PipelineConfig::default();
        cfg.preprocess.copies = 2;
        cfg.preprocess.size = 128;
        cfg
    }

    #[test]
    fn a_folder_keeps_the_run_settings_and_goes_whole_into_test() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("other set");
        for class in ["real", "fake"] {
            std::fs::create_dir_all(folder.join(class)).unwrap();
        }
        let run = run_config();
        let other = OtherDataset::resolve(&folder, &run).unwrap();
        assert_eq!(other.name, "other-set");
        assert_eq!(other.config.dataset.name, "other-set@all");
        assert_eq!(other.config.dataset.source, folder);
        assert_eq!(other.config.dataset.classes, run.dataset.classes);
        assert_eq!(other.config.split.test_fraction, 1.0);
        assert_eq!(other.config.preprocess.copies, 0);
        assert_eq!(other.config.preprocess.size, 128);
        assert_eq!(other.config.extract, run.extract);
    }

    #[test]
    fn a_folder_without_the_class_folders_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("real")).unwrap();
        let err = OtherDataset::resolve(tmp.path(), &run_config()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("lacks the class sub-folder(s) fake"), "{msg}");
    }

    #[test]
    fn a_pipeline_file_gives_its_dataset_section() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("other.toml");
        std::fs::write(
            &file,
            "[dataset]\nname = \"faces2\"\nsource = \"raw/faces2\"\n\
             classes = { genuine = 0, edited = 1 }\n[train]\nepochs = 99\n",
        )
        .unwrap();
        let other = OtherDataset::resolve(&file, &run_config()).unwrap();
        assert_eq!(other.name, "faces2");
        assert_eq!(other.config.dataset.name, "faces2@all");
        assert_eq!(other.config.dataset.classes["edited"], 1);
        let root = crate::DataRoot::new("/d");
        assert_eq!(
            root.source(&other.config.dataset),
            Path::new("/d/raw/faces2")
        );
        assert_eq!(
            other.config.train,
            run_config().train,
            "only [dataset] is taken"
        );
    }

    #[test]
    fn neither_folder_nor_file_says_what_to_give() {
        let err = OtherDataset::resolve(Path::new("/no/such/thing"), &run_config()).unwrap_err();
        assert!(err.to_string().contains("no such folder or pipeline file"));
    }
}
