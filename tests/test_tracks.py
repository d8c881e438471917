"""Tracking training data: the OTB, GOT-10k and LaSOT layouts read into the same tracks
(visible frames, polygons, NaN rows, separators), several roots, bad input, and streamed pairs
that never use a frame where the target is not visible."""

import numpy as np
import pytest
from PIL import Image

from siamese.cli import main
from siamese.config import TrackConfig
from siamese.data.tracks import read_tracks
from siamese.errors import DataError
from siamese.training.track_pairs import FrameCache, TrackPairs

W, H = 96, 72


def _frames(folder, n, colours=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((H, W, 3), 60, np.uint8)
        img[20:40, 30:50] = (colours or {}).get(i, (200, 40, 40))
        Image.fromarray(img).save(folder / f"{i + 1:08d}.jpg", quality=95)


def _rows(n, sep=","):
    return "".join(sep.join(["30", "20", "20", "20"]) + "\n" for _ in range(n))


def make_otb(root, name="Seq", n=6, targets=1, sep=","):
    _frames(root / name / "img", n)
    if targets == 1:
        (root / name / "groundtruth_rect.txt").write_text(_rows(n, sep))
    for k in range(1, targets + 1 if targets > 1 else 0):
        (root / name / f"groundtruth_rect.{k}.txt").write_text(_rows(n, sep))
    return root / name


def make_got10k(root, name="GOT-10k_Train_000001", n=8, absent=(2,), covered=(5,)):
    v = root / "train" / name
    _frames(v, n, {i: (0, 0, 250) for i in (*absent, *covered)})  # blue: must never show
    rows = _rows(n).splitlines()
    for i in absent:
        rows[i] = "nan,nan,nan,nan"
    (v / "groundtruth.txt").write_text("\n".join(rows) + "\n")
    (v / "absence.label").write_text("".join(f"{int(i in absent)}\n" for i in range(n)))
    (v / "cover.label").write_text("".join(f"{0 if i in covered else 8}\n" for i in range(n)))
    return v


def make_lasot(root, cls="car", k=1, n=7, occluded=(1,), out=(6,)):
    v = root / cls / f"{cls}-{k}"
    _frames(v / "img", n, {i: (0, 0, 250) for i in (*occluded, *out)})
    polygon = "30,20,50,20,50,40,30,40"  # a VOT polygon: the box 30,20,20,20
    (v / "groundtruth.txt").write_text("\n".join([polygon] + ["30\t20\t20\t20"] * (n - 1)))
    (v / "full_occlusion.txt").write_text(",".join(str(int(i in occluded)) for i in range(n)))
    (v / "out_of_view.txt").write_text(",".join(str(int(i in out)) for i in range(n)))
    return v


def test_every_layout_reads_into_the_same_tracks(tmp_path):
    make_otb(tmp_path / "otb", "Jog", targets=2, sep="\t")
    make_otb(tmp_path / "otb", "Dog", sep=" ")
    make_got10k(tmp_path / "got")
    make_lasot(tmp_path / "lasot")
    tracks = {t.name: t for t in read_tracks([tmp_path / "otb", tmp_path / "got",
                                              tmp_path / "lasot"])}
    assert set(tracks) == {"Jog-1", "Jog-2", "Dog", "GOT-10k_Train_000001", "car-1"}
    assert {t.layout for t in tracks.values()} == {"otb", "got10k", "lasot"}
    got, lasot = tracks["GOT-10k_Train_000001"], tracks["car-1"]
    assert got.usable.tolist() == [0, 1, 3, 4, 6, 7]  # absent 2 (a NaN row), covered 5
    assert lasot.usable.tolist() == [0, 2, 3, 4, 5]  # occluded 1, out of view 6
    np.testing.assert_allclose(lasot.boxes[0], [30, 20, 20, 20])  # the polygon's box
    assert all(np.allclose(t.boxes[t.usable], [30, 20, 20, 20]) for t in tracks.values())
    assert len(got.frames) == 8 and got.frames[0].name == "00000001.jpg"
    # selected by video or by track
    assert [t.name for t in read_tracks(tmp_path / "otb", ["Jog"])] == ["Jog-1", "Jog-2"]
    assert [t.name for t in read_tracks(tmp_path / "otb", ["Jog-2"])] == ["Jog-2"]


def test_streamed_pairs_never_use_a_frame_without_the_target(tmp_path):
    make_got10k(tmp_path, n=8, absent=(1, 2), covered=(5, 6))
    make_lasot(tmp_path, n=7)
    cfg = TrackConfig(exemplar=63, search=127, object_share=0.0, jitter=0.0, max_gap=3)
    pairs = TrackPairs(read_tracks(tmp_path), cfg, n=64, seed=0)
    z, x, offsets, looks, scales = pairs.batch(0, 64)
    assert z.shape == (64, 63, 63, 3) and x.shape == (64, 127, 127, 3) and scales is None
    for crops in (z, x):
        blue = (crops[..., 2].int() > 200) & (crops[..., 0].int() < 80)
        assert not blue.any(), "a crop of a frame where the target is absent or hidden"
    # a pair is a function of (seed, epoch, index): the same in any batch, any process
    again = pairs.batch(5, 3)
    assert np.array_equal(again[0][0].numpy(), z[5].numpy())
    fresh = TrackPairs(read_tracks(tmp_path), cfg, n=64, seed=0).batch(64 * 2 + 7, 1)
    other = pairs.batch(64 * 2 + 7, 1)
    assert np.array_equal(fresh[1].numpy(), other[1].numpy())
    assert not np.array_equal(pairs.batch(64 + 5, 1)[1].numpy(), x[5:6].numpy())  # epoch 1


def test_the_frame_cache_stays_within_its_budget(tmp_path):
    make_otb(tmp_path, n=12)
    frame_bytes = H * W * 3
    cache = FrameCache(budget=5 * frame_bytes)
    for f in sorted((tmp_path / "Seq" / "img").iterdir()):
        frame, mean = cache.get(f)
        assert frame.shape == (H, W, 3) and len(mean) == 3
        assert cache.used <= 5 * frame_bytes and len(cache.frames) <= 5
    assert cache.get(f)[0] is cache.frames[f][0]  # the newest is kept


@pytest.mark.parametrize("case, message", [
    ("no absence", "absence.label is missing"),
    ("short boxes", "has 5 boxes for the 8 frames"),
    ("empty video", "holds no frames"),
    ("bad row", "expected 4 numbers"),
    ("flags count", "has 7 values for 8 frames"),
    ("never visible", "is visible in no frame"),
    ("no videos", "holds no videos in the OTB, GOT-10k or LaSOT layout"),
])
def test_bad_tracking_data_is_one_line_naming_the_file(tmp_path, capsys, case, message):
    root = tmp_path / "data"
    v = make_got10k(root)
    if case == "no absence":
        (v / "absence.label").unlink()
    elif case == "short boxes":
        (v / "groundtruth.txt").write_text(_rows(5))
    elif case == "empty video":
        for f in v.glob("*.jpg"):
            f.unlink()
    elif case == "bad row":
        (v / "groundtruth.txt").write_text("1,2,3\n" * 8)
    elif case == "flags count":
        (v / "cover.label").write_text("8\n" * 7)
    elif case == "never visible":
        (v / "absence.label").write_text("1\n" * 8)
    elif case == "no videos":
        import shutil

        shutil.rmtree(root / "train")
        (root / "notes").mkdir()
    with pytest.raises(DataError, match=message):
        read_tracks(root)
    out = tmp_path / "run"
    assert main(["train", "--task", "tracking", "--data", str(root), "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.slow
def test_training_on_several_roots_of_different_layouts(tmp_path):
    import json

    from siamese import train

    make_got10k(tmp_path / "got", n=8)
    make_lasot(tmp_path / "lasot", n=7)
    out = tmp_path / "run"
    model = train({"data": {"path": [str(tmp_path / "got"), str(tmp_path / "lasot")]},
                   "train": {"task": "tracking", "epochs": 1, "batch_size": 4, "workers": 1},
                   "model": {"width": 4},
                   "track": {"exemplar": 87, "search": 127, "pairs_per_epoch": 8}}, out,
                  quiet=True)
    card = json.loads((out / "card.json").read_text())
    assert card["data"]["targets"] == ["GOT-10k_Train_000001", "car-1"]
    assert card["data"]["layouts"] == ["got10k", "lasot"] and card["engine"]["workers"] == 1
    assert card["data"]["frames"] == 6 + 5
    boxes, _ = model.track(tmp_path / "lasot/car/car-1/img", [30, 20, 20, 20])
    assert boxes.shape == (7, 4)
