//! Where weights are found: the Hugging Face cache in Python's layout, torch's own download cache
//! (`TORCH_HOME`), and the offline message. One test: it sets process environment variables.

mod small;

use dfd_model::{resolve_weights, WeightsSource};
use small::{initial_tensors, save_pth, small_arch};

#[test]
fn weights_come_from_the_hf_cache_then_the_torch_cache_and_offline_says_how_to_get_them() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = small_arch();
    let tensors = initial_tensors(&arch);
    for var in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_ENDPOINT",
        "HF_TOKEN",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("HF_HOME", tmp.path().join("hf"));
    std::env::set_var("HF_HUB_OFFLINE", "1");
    std::env::set_var("TORCH_HOME", tmp.path().join("torch"));
    let tv: WeightsSource = "torchvision:resnet50".parse().unwrap();
    let default_style: WeightsSource = "hf:timm/resnet50.tv_in1k".parse().unwrap();

    // Nothing cached, offline: the error names the URL (from the endpoint in use), the cache and
    // the other ways.
    let err = format!("{:#}", resolve_weights(&tv, &arch).unwrap_err());
    assert!(
        err.contains("https://huggingface.co/timm/resnet50.tv_in1k/resolve/main/model.safetensors")
            && err.contains("HF_HUB_OFFLINE")
            && err.contains("random:<seed>")
            && err.contains("TORCH_HOME"),
        "{err}"
    );
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9/mirror/");
    let err = format!("{:#}", resolve_weights(&default_style, &arch).unwrap_err());
    assert!(
        err.contains(
            "http://127.0.0.1:9/mirror/timm/resnet50.tv_in1k/resolve/main/model.safetensors"
        ),
        "{err}"
    );
    std::env::remove_var("HF_ENDPOINT");

    // torchvision's own download in TORCH_HOME serves both spellings, with no network.
    let reference = tmp.path().join("reference.safetensors");
    candle_core::safetensors::save(&tensors, &reference).unwrap();
    let identity = resolve_weights(&WeightsSource::File(reference.clone()), &arch)
        .unwrap()
        .identity;
    let torch_file = tmp
        .path()
        .join("torch/hub/checkpoints/resnet50-0676ba61.pth");
    save_pth(&torch_file, &tensors, "");
    for source in [&tv, &default_style] {
        let found = resolve_weights(source, &arch).unwrap();
        assert_eq!(found.path.as_deref(), Some(torch_file.as_path()));
        assert_eq!(found.served_by, "torch hub cache");
        assert_eq!(found.identity, identity, "same tensors, same identity");
    }

    // A Hugging Face cache in Python's layout comes first.
    let repo = tmp.path().join("hf/hub/models--timm--resnet50.tv_in1k");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    std::fs::copy(&reference, repo.join("blobs/abc123")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::os::unix::fs::symlink(
        "../../blobs/abc123",
        repo.join("snapshots")
            .join(commit)
            .join("model.safetensors"),
    )
    .unwrap();
    for source in [
        tv.clone(),
        default_style.clone(),
        format!("hf:timm/resnet50.tv_in1k@{commit}")
            .parse()
            .unwrap(),
    ] {
        let found = resolve_weights(&source, &arch).unwrap();
        assert_eq!(found.served_by, "Hugging Face cache", "{source}");
        assert_eq!(found.identity, identity, "{source}");
    }
}
