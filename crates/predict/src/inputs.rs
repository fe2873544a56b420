//! Which files to score: the command line's files as given, and the image files under its folders.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// File extensions a folder walk picks up, compared case-insensitively.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"];

/// The files to score, argument by argument in the order given: a file is taken as is, whatever its
/// extension (the decoder then says whether it is an image); a folder is walked recursively for
/// files with an [`IMAGE_EXTENSIONS`] extension, hidden entries skipped, in sorted path order.
/// An argument that does not exist, or finding no file at all, is an error.
pub fn collect(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for arg in args {
        let meta = std::fs::metadata(arg)
            .with_context(|| format!("input {} is not readable", arg.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(arg, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(arg.clone());
        }
    }
    if files.is_empty() {
        bail!(
            "no image files in {} (looked for extensions {})",
            args.iter()
                .map(|a| a.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            IMAGE_EXTENSIONS.join(", ")
        );
    }
    Ok(files)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let meta =
            std::fs::metadata(&path).with_context(|| format!("inspecting {}", path.display()))?;
        if meta.is_dir() {
            walk(&path, found)?;
        } else if has_image_extension(&path) {
            found.push(path);
        }
    }
    Ok(())
}

fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_for_images_in_sorted_order_and_files_kept_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [
            "b/z.JPG",
            "b/a.png",
            "a.Jpeg",
            "notes.txt",
            ".hidden/x.png",
            "b/.y.png",
            "c/d/e.webp",
        ] {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        }
        let explicit = root.join("notes.txt");
        let files = collect(&[explicit.clone(), root.to_path_buf()]).unwrap();
        let expected = [
            explicit,
            root.join("a.Jpeg"),
            root.join("b/a.png"),
            root.join("b/z.JPG"),
            root.join("c/d/e.webp"),
        ];
        assert_eq!(files, expected);
    }

    #[test]
    fn missing_inputs_and_empty_folders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = collect(&[dir.path().join("nope.jpg")]).unwrap_err();
        assert!(format!("{err:#}").contains("nope.jpg"), "{err:#}");
        let err = collect(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.to_string().contains("no image files"), "{err}");
    }
}
