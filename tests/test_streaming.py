"""Image folders left on disk (data.cache = "none") and decoded batch by batch by DataLoader
workers give exactly what the in-memory path gives: the same samples, batches, statistics,
embeddings and, trained on the same seed, the same weights."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import siamese
from conftest import digit_folder
from siamese.data.datasets import load_dataset
from siamese.data.lazy import ImageFiles
from siamese.data.loader import IndexedSamples, RankBatches, make_loader
from siamese.data.preprocessing import Preprocessing
from siamese.data.sampling import ClassBalancedSampler
from siamese.data.transforms import add_transformed_classes


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return digit_folder(tmp_path_factory.mktemp("d") / "digits", per_class=12)


def _both(path, size=12):
    mem = load_dataset(str(path), size, cache="memory")
    disk = load_dataset(str(path), size, cache="none")
    assert isinstance(mem.x, torch.Tensor) and isinstance(disk.x, ImageFiles)
    return mem, disk


def test_files_read_like_the_tensor_by_int_slice_and_index(digits_dir):
    mem, disk = _both(digits_dir)
    assert disk.x.shape == tuple(mem.x.shape) and len(disk.x) == len(mem.x)
    idx = np.array([5, 0, 77, 5])
    assert torch.equal(disk.x[3], mem.x[3])
    assert torch.equal(disk.x[10:20:3], mem.x[10:20:3])
    assert torch.equal(disk.x[idx], mem.x[torch.from_numpy(idx)])
    assert torch.equal(disk.x[torch.from_numpy(idx)], mem.x[torch.from_numpy(idx)])
    sub_m, sub_d = mem.subset(idx[:3]), disk.subset(idx[:3])
    assert torch.equal(sub_d.x[np.arange(3)], sub_m.x)
    assert sub_d.sources == sub_m.sources


def test_statistics_normalisation_and_class_variants_match(digits_dir):
    mem, disk = _both(digits_dir)
    pm, pd = Preprocessing.fit(mem.x, "image"), Preprocessing.fit(disk.x, "image", workers=2)
    assert pm == pd
    ref = mem.x.double()  # an independent reference: torch's own float64 mean and std
    assert pm.mean[0] == pytest.approx(float(ref.mean()), abs=1e-6)
    assert pm.std[0] == pytest.approx(float(ref.std()), abs=1e-6)
    for flips in (False, True):
        xm, ym, *_ = add_transformed_classes(pm.normalize(mem.x), mem.y, mem.classes, flips=flips)
        xd, yd, *_ = add_transformed_classes(pd.normalize(disk.x), disk.y, disk.classes,
                                             flips=flips)
        assert len(xd) == len(xm) and np.array_equal(yd, ym)
        pick = np.array([0, len(mem.x) + 4, len(xm) - 1, 2 * len(mem.x) + 9])
        assert torch.equal(xd[pick], xm[torch.from_numpy(pick)])


@pytest.mark.parametrize("workers", [0, 2])
def test_disk_and_memory_give_identical_batches_for_a_seed(digits_dir, workers):
    mem, disk = _both(digits_dir)
    pre = Preprocessing.fit(mem.x, "image")
    sampler = ClassBalancedSampler(mem.y, 5, 4, seed=3)
    a = make_loader(IndexedSamples(pre.normalize(mem.x), mem.y), RankBatches(sampler), 0)
    b = make_loader(IndexedSamples(pre.normalize(disk.x), disk.y), RankBatches(sampler), workers)
    for epoch in (0, 1):
        a.batch_sampler.set_epoch(epoch)
        b.batch_sampler.set_epoch(epoch)
        pairs = list(zip(a, b, strict=True))
        assert len(pairs) == len(a.batch_sampler) > 3
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_ranks_share_each_global_batch_without_overlap(digits_dir):
    mem = load_dataset(str(digits_dir), 8)
    sampler = ClassBalancedSampler(mem.y, 4, 4, seed=0)
    whole = sampler.epoch(2)
    shares = []
    for rank in range(4):
        rb = RankBatches(sampler, rank, 4)
        rb.set_epoch(2)
        shares.append(list(rb))
    for i, batch in enumerate(whole):
        assert np.concatenate([s[i] for s in shares]).tolist() == batch.tolist()
    with pytest.raises(ValueError, match="does not divide"):
        RankBatches(sampler, 0, 3)


def test_embeddings_with_tta_are_the_same_from_disk(digits_dir, tiny_run_session):
    model = siamese.load(tiny_run_session)
    size = model.preprocessing.input_shape[1]
    mem, disk = _both(digits_dir, size)
    pre = model.preprocessing
    for views in (0, 3):
        em = model.embed_tensor(pre.normalize(mem.x), batch_size=16, views=views)
        ed = model.embed_tensor(pre.normalize(disk.x), batch_size=7, views=views, workers=2)
        torch.testing.assert_close(ed, em, atol=1e-6, rtol=0)


def test_a_run_over_a_folder_beyond_its_memory_budget_streams_and_trains_the_same(
        digits_dir, tmp_path):
    cfg = {"data": {"path": str(digits_dir), "image_size": 8, "class_rotations": True},
           "split": {"test_classes": ["8", "9"]}, "model": {"width": 8, "embedding_dim": 8},
           "train": {"epochs": 2, "batch_size": 16, "val_pairs": 100},
           "eval": {"episodes": 5, "pairs": 100}}
    mem = siamese.train({**cfg, "data": {**cfg["data"], "cache": "memory"}}, tmp_path / "m",
                        quiet=True)
    disk = siamese.train({**cfg, "data": {**cfg["data"], "cache": "auto", "cache_gb": 1e-6},
                          "train": {**cfg["train"], "workers": 2}}, tmp_path / "d", quiet=True)
    assert mem.card["data"]["cache"] == "memory"
    assert disk.card["data"]["cache"] == "none" and disk.card["engine"]["workers"] == 2
    wm, wd = load_file(tmp_path / "m" / "model.safetensors"), \
        load_file(tmp_path / "d" / "model.safetensors")
    for k in wm:
        torch.testing.assert_close(wd[k], wm[k], atol=1e-5, rtol=1e-4)
    assert [h["loss"] for h in disk.card["history"]] == pytest.approx(
        [h["loss"] for h in mem.card["history"]], rel=1e-5)
    again = siamese.evaluate(siamese.load(tmp_path / "d"), out=tmp_path / "e")
    assert again["unseen"]["verification"]["roc_auc"] == pytest.approx(
        disk.card["metrics"]["unseen"]["verification"]["roc_auc"], abs=1e-6)


def test_the_decoded_disk_cache_reads_what_decoding_gives_and_is_made_once(digits_dir,
                                                                         tmp_path):
    mem = load_dataset(str(digits_dir), 12, cache="memory")
    disk = load_dataset(str(digits_dir), 12, cache="disk", cache_dir=str(tmp_path / "c"))
    assert disk.x.decoded is not None
    made = list((tmp_path / "c").glob("*.u8"))
    assert len(made) == 1 and made[0].stat().st_size == len(mem.x) * 12 * 12
    stamp = made[0].stat().st_mtime_ns
    idx = np.array([3, 100, 0, 57])
    assert torch.equal(disk.x[idx], mem.x[torch.from_numpy(idx)])
    sub_m, sub_d = mem.subset(idx), disk.subset(idx)  # a subset reads its own rows
    assert torch.equal(sub_d.x[np.arange(4)], sub_m.x)
    pre = Preprocessing.fit(mem.x, "image")
    xm, *_ = add_transformed_classes(pre.normalize(mem.x), mem.y, mem.classes, flips=True)
    xd, *_ = add_transformed_classes(pre.normalize(disk.x), disk.y, disk.classes, flips=True)
    pick = np.arange(0, len(xm), 37)
    assert torch.equal(xd[pick], xm[torch.from_numpy(pick)])
    load_dataset(str(digits_dir), 12, cache="disk", cache_dir=str(tmp_path / "c"))
    assert made[0].stat().st_mtime_ns == stamp  # reused, not made again
    changed = next((digits_dir / "3").glob("*.png"))
    changed.touch()
    load_dataset(str(digits_dir), 12, cache="disk", cache_dir=str(tmp_path / "c"))
    assert len(list((tmp_path / "c").glob("*.u8"))) == 2  # a changed file: a new cache


def test_an_unwritable_cache_dir_is_one_line_naming_it(digits_dir, tmp_path):
    from siamese.errors import DataError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write the decoded-image cache .*data.cache_dir"):
        load_dataset(str(digits_dir), 12, cache="disk", cache_dir=str(blocker / "sub"))


@pytest.mark.parametrize("cache, workers, ema", [("memory", 0, 0.0), ("none", 2, 0.0),
                                                ("memory", 0, 0.9)])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(digits_dir, tmp_path,
                                                                      monkeypatch, cache,
                                                                      workers, ema):
    from siamese.training import callbacks

    cfg = {"data": {"path": str(digits_dir), "image_size": 8, "cache": cache},
           "split": {"test_classes": ["8", "9"]}, "model": {"width": 8, "embedding_dim": 8},
           "train": {"epochs": 4, "batch_size": 16, "val_pairs": 100, "workers": workers,
                     "keep": "last", "ema": ema},
           "eval": {"episodes": 5, "pairs": 100}}
    siamese.train(cfg, tmp_path / "whole", quiet=True)
    save = callbacks.Checkpoint.on_epoch_end

    def killed_after_epoch_2(self, trainer, logs):
        save(self, trainer, logs)
        if logs["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        siamese.train(cfg, tmp_path / "cut", quiet=True)
    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", save)
    resumed = siamese.train(out=tmp_path / "cut", resume=True, quiet=True)
    assert [h["epoch"] for h in resumed.card["history"]] == [1, 2, 3, 4]
    whole = load_file(tmp_path / "whole" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "model.safetensors")
    for k in whole:
        assert torch.equal(cut[k], whole[k]), k


def test_a_truncated_disk_cache_is_one_line_naming_it(digits_dir, tmp_path):
    from siamese.errors import DataError

    disk = load_dataset(str(digits_dir), 12, cache="disk", cache_dir=str(tmp_path / "c"))
    cache = next((tmp_path / "c").glob("*.u8"))
    cache.write_bytes(cache.read_bytes()[:1000])  # (the size check remakes it on the next load)
    with pytest.raises(DataError, match="is shorter than it was written; delete it"):
        disk.x[np.array([len(disk.x) - 1])]


def test_a_corrupt_image_read_by_a_worker_is_one_line_naming_it(digits_dir, tmp_path, capsys):
    import shutil

    from siamese.cli import main

    data = tmp_path / "digits"
    shutil.copytree(digits_dir, data)
    bad = data / "3" / "0.png"
    bad.write_bytes(bad.read_bytes()[:60])
    assert main(["train", "--data", str(data), "--image-size", "8", "--epochs", "1",
                 "--cache", "none", "--workers", "2", "--quiet", "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot read image {bad}") and "\n" not in err
