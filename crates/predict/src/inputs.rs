//! Which files to score: the command line's files as given, and the image files under its folders.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use dfd_layout::walk::{walk, Entry};

/// File extensions a folder walk picks up, compared case-insensitively.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"];

/// The inputs to score, argument by argument in the order given, each walked with
/// [`dfd_layout::walk`]: a file argument is taken as is, whatever its extension (the decoder then
/// says whether it is an image); under a folder, the files with an [`IMAGE_EXTENSIONS`] extension,
/// in path order. Entries that cannot be read (an argument or an entry under a folder that is a
/// dangling link, a link loop, a FIFO, socket or device, or unreadable) are kept, with their
/// [`Entry::problem`], to become error rows. An argument that does not exist at all, or finding
/// nothing at all, is an error.
pub fn collect(args: &[PathBuf]) -> Result<Vec<Entry>> {
    let mut inputs = Vec::new();
    for arg in args {
        std::fs::symlink_metadata(arg)
            .with_context(|| format!("input {} is not readable", arg.display()))?;
        inputs.extend(walk(arg).into_iter().filter(|e| {
            e.problem.is_some() || e.rel.as_os_str().is_empty() || has_image_extension(&e.path)
        }));
    }
    if inputs.is_empty() {
        bail!(
            "no image files in {} (looked for extensions {})",
            args.iter()
                .map(|a| a.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            IMAGE_EXTENSIONS.join(", ")
        );
    }
    Ok(inputs)
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
        let files: Vec<PathBuf> = collect(&[explicit.clone(), root.to_path_buf()])
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
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
    fn entries_that_cannot_be_read_are_kept_as_problems() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("photos/x.jpg")).unwrap();
        std::fs::write(root.join("photos/x.jpg/a.png"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("photos/dangling")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere.jpg"), root.join("gone.jpg")).unwrap();
        let found: Vec<(PathBuf, Option<&str>)> =
            collect(&[root.join("gone.jpg"), root.join("photos")])
                .unwrap()
                .into_iter()
                .map(|e| (e.path, e.problem.map(|p| p.reason.as_str())))
                .collect();
        assert_eq!(
            found,
            [
                (root.join("gone.jpg"), Some("dangling_link")),
                (root.join("photos/dangling"), Some("dangling_link")),
                (root.join("photos/x.jpg/a.png"), None),
            ]
        );
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
