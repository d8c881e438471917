"""Tracking (SiamFC): the OTB scorer against brute force and the published figures, the
cross-correlation and the response loss against naive loops, crops, and end-to-end runs on
synthetic sequences and on a real one (skipped without ../shared/data)."""

import itertools
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import siamese
from conftest import SHARED_DATA
from siamese.cli import main
from siamese.data.crops import crop
from siamese.evaluation.otb import SUCCESS_THRESHOLDS, centre_error, iou, score
from siamese.losses.response import balanced_logistic_loss, response_labels
from siamese.models.siamfc import SiamFC, cross_correlate, siamfc_small
from siamese.training.track_pairs import random_box

OTB = SHARED_DATA / "otb"


def test_iou_and_curves_match_a_pixel_count():
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.integers(0, 20, (40, 2)), rng.integers(1, 15, (40, 2))])
    b = np.column_stack([rng.integers(0, 20, (40, 2)), rng.integers(1, 15, (40, 2))])

    def mask(box):
        m = np.zeros((40, 40), bool)
        x, y, w, h = box
        m[y:y + h, x:x + w] = True
        return m

    want = [(mask(p) & mask(q)).sum() / (mask(p) | mask(q)).sum()
            for p, q in zip(a, b, strict=True)]
    np.testing.assert_allclose(iou(a, b), want)
    s = score(a, b)
    assert s["success"] == [np.mean([w > t for w in want]) for t in SUCCESS_THRESHOLDS]
    assert s["success_auc"] == pytest.approx(np.mean(s["success"]))
    ca = a[:, :2] + (a[:, 2:] - 1) / 2
    cb = b[:, :2] + (b[:, 2:] - 1) / 2
    assert s["precision_20"] == np.mean(np.hypot(*(ca - cb).T) <= 20)
    np.testing.assert_allclose(centre_error(a, b), np.hypot(*(ca - cb).T))


def test_frames_without_truth_do_not_count_and_lost_frames_score_zero():
    truth = np.array([[0, 0, 10, 10], [0, 0, 0, 0], [5, 5, 10, 10], [1, 1, 4, 4]], float)
    pred = np.array([[0, 0, 10, 10], [9, 9, 9, 9], [np.nan, 0, 0, 0]], float)  # one short
    s = score(pred, truth)
    assert s["frames"] == 3 and s["mean_iou"] == pytest.approx(1 / 3)


@pytest.mark.skipif(not OTB.is_dir(), reason="no OTB sequences in shared data")
def test_the_published_results_score_as_published():
    from siamese.data.otb import list_targets
    from siamese.tracking.evaluate import published_scores

    got = published_scores(list_targets(OTB))
    for name, auc in {"MDNet": 0.718, "SiamFC-3s": 0.637, "SRDCF": 0.628, "KCF": 0.356}.items():
        assert got[name]["mean"]["success_auc"] == pytest.approx(auc, abs=5e-4), name


def test_cross_correlation_matches_a_loop_and_follows_a_shift():
    z, x = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 12, 12)
    want = torch.stack([F.conv2d(x[i:i + 1], z[i:i + 1])[0] for i in range(3)])
    torch.testing.assert_close(cross_correlate(z, x), want)
    torch.testing.assert_close(cross_correlate(z[:1], x), F.conv2d(x, z[:1]))
    # no padding: moving the target by one stride moves the response peak by one cell
    net = SiamFC(siamfc_small((3, 127, 127), width=4)).eval()
    rng = np.random.default_rng(0)
    target = rng.integers(0, 255, (3, 40, 40))
    peaks = []
    for dx in (0, 8, 16):
        frame = np.full((3, 255, 255), 128.0)
        frame[:, 107:147, 107 + dx:147 + dx] = target
        exemplar = np.full((3, 127, 127), 128.0)
        exemplar[:, 43:83, 43:83] = target
        with torch.no_grad():
            r = net(torch.tensor(exemplar[None]).float(), torch.tensor(frame[None]).float())
        peaks.append(np.unravel_index(int(r[0, 0].argmax()), r.shape[-2:]))
    assert [p[1] - peaks[0][1] for p in peaks] == [0, 1, 2]
    assert len({p[0] for p in peaks}) == 1


def test_labels_and_the_balanced_loss_match_naive_loops():
    offsets = torch.tensor([[0.0, 0.0], [17.0, -9.0]])
    labels = response_labels(17, 8, 16.0, offsets)
    for b, i, j in itertools.product(range(2), range(17), range(17)):
        px, py = (j - 8) * 8, (i - 8) * 8
        inside = (px - offsets[b, 0]) ** 2 + (py - offsets[b, 1]) ** 2 <= 256
        assert labels[b, 0, i, j] == float(inside)
    logits = torch.randn(2, 1, 17, 17)
    want = 0.0
    for b in range(2):
        lab, lg = labels[b].flatten(), logits[b].flatten()
        pos, neg = lab.sum(), (1 - lab).sum()
        terms = [(0.5 / pos if y else 0.5 / neg) * F.binary_cross_entropy_with_logits(v, y)
                 for v, y in zip(lg, lab, strict=True)]
        want += sum(terms) / 2
    torch.testing.assert_close(balanced_logistic_loss(logits, labels), want)


def test_in_training_the_exemplar_is_normalised_as_when_tracking():
    """Training normalises the search crops by their batch and the exemplars by the running
    statistics; tracking normalises both by the running statistics (models/siamfc.py)."""
    torch.manual_seed(0)
    net = SiamFC(siamfc_small((3, 87, 87), width=4), exemplar=87, search=127)
    z, x = torch.rand(4, 3, 87, 87) * 255, torch.rand(4, 3, 127, 127) * 255
    before = [m.running_mean.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    logits = net.train()(z, x)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert net.training and all(m.training for m in norms)
    assert all(not torch.equal(b, m.running_mean) for b, m in zip(before, norms, strict=True))
    with torch.no_grad():  # the running statistics were updated by the search crops first
        z_eval = net.eval().embed(z)
        net.train()
        x_train = net.embed(x)
    torch.testing.assert_close(logits, net.respond(z_eval, x_train))
    logits.sum().backward()  # the exemplar branch still trains the backbone
    assert net.backbone[0].weight.grad.abs().sum() > 0


def test_random_boxes_lie_inside_the_frame():
    rng = np.random.default_rng(0)
    boxes = np.stack([random_box((120, 160, 3), rng) for _ in range(500)])
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 160).all()
    assert (boxes[:, 1] + boxes[:, 3] <= 120).all()
    area = boxes[:, 2] * boxes[:, 3] / (120 * 160)
    assert area.min() >= 0.004 and area.max() <= 0.1 + 1e-9
    assert ((boxes[:, 2] / boxes[:, 3]) > 1.5).any() and ((boxes[:, 2] / boxes[:, 3]) < 0.67).any()


def test_crops_centre_the_point_and_fill_past_the_edge_with_the_mean():
    frame = np.zeros((50, 60, 3), np.uint8)
    frame[20, 30] = [255, 0, 0]
    c = crop(frame, 30, 20, 11, 11)
    assert tuple(c[5, 5]) == (255, 0, 0) and c.sum() == 255
    edge = crop(frame, 0, 0, 21, 21, mean=(7.0, 8.0, 9.0))
    assert tuple(edge[0, 0]) == (7, 8, 9) and tuple(edge[15, 15]) == (0, 0, 0)


def _sequences(root, n=2, frames=24):
    """Synthetic OTB folders: a textured square gliding over a noisy background."""
    rng = np.random.default_rng(1)
    for s in range(n):
        seq = root / f"Seq{s}"
        (seq / "img").mkdir(parents=True)
        patch = rng.integers(0, 255, (24, 24, 3))
        boxes = []
        for f in range(frames):
            img = rng.integers(90, 140, (120, 160, 3))
            x, y = 20 + 3 * f + 10 * s, 40 + int(10 * np.sin(f / 4))
            img[y:y + 24, x:x + 24] = patch
            Image.fromarray(img.astype(np.uint8)).save(seq / "img" / f"{f + 1:04d}.jpg")
            boxes.append(f"{x},{y},24,24")
        (seq / "groundtruth_rect.txt").write_text("\n".join(boxes) + "\n")
    return root


TINY = ["--task", "tracking", "--width", "4", "--batch-size", "4", "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def tracking_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("otb")
    data = _sequences(root / "data")
    cfg = root / "t.toml"
    cfg.write_text("[track]\npairs_per_epoch = 8\nexemplar = 87\nsearch = 127\n")
    assert main(["train", "--config", str(cfg), "--data", str(data), "--out",
                 str(root / "run"), *TINY]) == 0
    return root / "run", data


def test_train_track_render_and_evaluate(tracking_run, tmp_path, capsys):
    run, data = tracking_run
    model = siamese.load(run)
    first = [float(v) for v in (data / "Seq0/groundtruth_rect.txt").read_text().split()[0]
             .split(",")]
    boxes, fps = model.track(data / "Seq0/img", first)
    assert boxes.shape == (24, 4) and fps > 0 and np.allclose(boxes[0], first)
    out, gif = tmp_path / "b.txt", tmp_path / "t.gif"
    assert main(["track", str(run), "--frames", str(data / "Seq1/img"), "--box",
                 "30,40,24,24", "--out", str(out), "--render", str(gif), "--quiet"]) == 0
    assert len(out.read_text().splitlines()) == 24
    sure = np.loadtxt(tmp_path / "b.confidence.txt")  # beside --out: each frame's confidence
    assert sure.shape == (24,) and sure[0] == 1 and ((sure >= 0) & (sure <= 1)).all()
    again, same, _ = model.track(data / "Seq1/img", [30, 40, 24, 24], confidence=True)
    np.testing.assert_allclose(same, sure, atol=1e-4)
    np.testing.assert_allclose(again, np.loadtxt(out, delimiter=","), atol=0.006)
    assert Image.open(gif).n_frames == 24
    assert main(["evaluate", str(run), "--otb", str(data), "--out", str(tmp_path / "e")]) == 0
    table = capsys.readouterr().out
    assert "| **ours**" in table
    assert (tmp_path / "e/success.png").stat().st_size > 5000
    assert (tmp_path / "e/precision.png").stat().st_size > 5000


def test_tracker_settings_change_tracking_not_the_weights(tracking_run, tmp_path):
    from siamese.errors import ConfigError

    run, data = tracking_run
    model = siamese.load(run)
    one = model.with_settings(scales=1)
    assert one.net is model.net and one.cfg.track.scales == 1 and model.cfg.track.scales == 3
    assert one.cfg.model == model.cfg.model
    first = [24.0, 40.0, 24.0, 24.0]
    boxes, _ = one.track(data / "Seq0/img", first)
    assert np.allclose(boxes[:, 2:], 24.0)  # one scale: the size never changes
    with pytest.raises(ConfigError, match="not tracker settings: lr"):
        model.with_settings(lr=0.1)
    with pytest.raises(ConfigError, match="odd"):
        model.with_settings(scales=2)
    # the CLI's --set gives the same tracker
    out = tmp_path / "one.txt"
    assert main(["track", str(run), "--frames", str(data / "Seq0/img"), "--box",
                 ",".join(map(str, first)), "--out", str(out), "--quiet", "--set",
                 "track.scales=1"]) == 0
    assert np.allclose(np.loadtxt(out, delimiter=","), boxes, atol=0.006)


def test_video_files_track_like_their_frames(tracking_run, tmp_path):
    import cv2

    run, data = tracking_run
    frames = [np.asarray(Image.open(p)) for p in sorted((data / "Seq0/img").glob("*.jpg"))]
    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    assert main(["track", str(run), "--video", str(video), "--box", "20,40,24,24", "--out",
                 str(tmp_path / "v.txt"), "--quiet"]) == 0
    assert len((tmp_path / "v.txt").read_text().splitlines()) == 24


@pytest.mark.parametrize("case, message", [
    (["--box", "500,500,10,10"], "lies outside the 160x120 first frame"),
    (["--box", "20,40,0,24"], "has no area"),
    (["--box", "20,40"], "give x,y,w,h"),
    (["--frames", "EMPTY"], "holds no JPEG, PNG or BMP frames"),
    (["--frames", "MIXED"], "give the frames of one video"),
    (["--frames", "CUT_JPEG"], "replace or remove the file"),  # issue 43: not half grey
    (["--frames", "CUT_PNG"], "replace or remove the file"),
    (["--video", "BROKEN"], "cannot read video"),
    (["--set", "train.lr=0.1"], "takes tracker settings, --set track.KEY=VALUE"),
    (["--set", "track.lr=0.1"], "not tracker settings: lr"),
    (["--set", "track.scales=2"], "odd"),
])
def test_bad_tracking_input_is_one_line_and_writes_nothing(tracking_run, tmp_path, capsys,
                                                           case, message):
    run, data = tracking_run
    (tmp_path / "empty").mkdir()
    mixed = shutil.copytree(data / "Seq0/img", tmp_path / "mixed")
    Image.new("RGB", (10, 10)).save(mixed / "9999.jpg")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    where = {"EMPTY": tmp_path / "empty", "MIXED": mixed, "BROKEN": tmp_path / "broken.mp4"}
    for key, suffix in (("CUT_JPEG", ".jpg"), ("CUT_PNG", ".png")):
        folder = tmp_path / key
        folder.mkdir()
        for i, f in enumerate(sorted((data / "Seq0/img").iterdir())):
            Image.open(f).save(folder / f"{i:04d}{suffix}")
        middle = sorted(folder.iterdir())[5]
        middle.write_bytes(middle.read_bytes()[:-200])  # cut short: the end of the file lost
        where[key] = folder
    args = [str(where.get(a, a)) for a in case]
    if "--frames" not in case and "--video" not in case:
        args += ["--frames", str(data / "Seq0/img")]
    if "--box" not in case:
        args += ["--box", "20,40,24,24"]
    out = tmp_path / "b.txt"
    assert main(["track", str(run), *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_tracking_and_pair_runs_are_not_mixed_up(tracking_run, run_copy, tmp_path, capsys):
    run, data = tracking_run
    a = next((data / "Seq0/img").iterdir())
    assert main(["compare", str(run), str(a), str(a)]) == 2
    assert "is a tracking model" in capsys.readouterr().err
    assert main(["track", str(run_copy), "--frames", str(data / "Seq0/img"), "--box",
                 "20,40,24,24", "--out", str(tmp_path / "b.txt")]) == 2
    assert "is not a tracking run" in capsys.readouterr().err
    assert main(["evaluate", str(run_copy), "--otb", str(data)]) == 2
    assert "is not a tracking run" in capsys.readouterr().err


@pytest.mark.skipif(not (OTB / "Football1").is_dir(), reason="no OTB sequences in shared data")
def test_a_real_sequence_tracks_end_to_end(tracking_run, tmp_path):
    from siamese.data.otb import list_targets

    run, _ = tracking_run
    target = list_targets(OTB, ["Football1"])[0]
    frames = target.frames[:12]
    img = tmp_path / "img"
    img.mkdir()
    for f in frames:
        shutil.copy(f, img / f.name)
    boxes, _ = siamese.load(run).track(img, target.boxes[0])
    assert boxes.shape == (12, 4) and np.isfinite(boxes).all()
    assert score(boxes, target.boxes[:12])["frames"] == 12


def test_a_resumed_tracking_run_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from siamese.training import callbacks

    data = _sequences(tmp_path / "data", n=2, frames=10)
    cfg = {"data": {"path": str(data)}, "model": {"width": 4},
           "train": {"task": "tracking", "epochs": 3, "batch_size": 4},
           "track": {"pairs_per_epoch": 8, "exemplar": 87, "search": 127}}
    siamese.train(cfg, tmp_path / "whole", quiet=True)
    save = callbacks.Checkpoint.on_epoch_end

    def killed_after_epoch_1(self, trainer, logs):
        save(self, trainer, logs)
        if logs["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        siamese.train(cfg, tmp_path / "cut", quiet=True)
    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", save)
    resumed = siamese.train(out=tmp_path / "cut", resume=True, quiet=True)
    assert [h["epoch"] for h in resumed.card["history"]] == [1, 2, 3]
    whole = load_file(tmp_path / "whole" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "model.safetensors")
    assert whole.keys() == cut.keys()
    for k in whole:
        assert torch.equal(cut[k], whole[k]), k


def test_runs_saved_with_the_scale_itself_still_load():
    """The scale is learned as its log (a plain parameter of 1e-3 flipped sign under Adam);
    a state saved with the scale itself loads to the same responses; a negative one is
    refused."""
    torch.manual_seed(0)
    net = SiamFC(siamfc_small((3, 87, 87), width=4), exemplar=87, search=127).eval()
    z, x = torch.rand(1, 3, 87, 87) * 255, torch.rand(2, 3, 127, 127) * 255
    with torch.no_grad():
        net.log_scale.fill_(math.log(2.5e-3))
        want = net(z, x)
    old = {k: v for k, v in net.state_dict().items() if k != "log_scale"}
    old["scale"] = torch.tensor(2.5e-3)
    other = SiamFC(siamfc_small((3, 87, 87), width=4), exemplar=87, search=127).eval()
    other.load_state_dict(old)
    with torch.no_grad():
        torch.testing.assert_close(other(z, x), want)
    old["scale"] = torch.tensor(-2.5e-3)
    with pytest.raises(RuntimeError, match="negative response scale"):
        other.load_state_dict(old)


def test_negative_pairs_show_another_target_and_have_no_positive():
    """track.negative_share: the search crop is around another video's target (a look-alike)
    and no cell of its map is positive; at 0 every map has its positives."""
    from siamese.config import Config
    from siamese.training.track_pairs import TrackPairs

    videos = []
    for k, colour in enumerate([(200, 0, 0), (0, 200, 0)]):
        frame = np.full((120, 160, 3), 10 * (k + 1), np.uint8)
        frame[50:70, 70:90] = colour
        videos.append(([frame] * 3, np.array([[70, 50, 20, 20]] * 3, float)))
    cfg = Config()
    cfg.track.exemplar, cfg.track.search, cfg.track.object_share = 87, 127, 0.0
    for share in (1.0, 0.0):
        cfg.track.negative_share = share
        pairs = TrackPairs.in_memory(videos, cfg.track)
        rng = np.random.default_rng(0)
        for _ in range(20):
            z, x, offset = pairs.pair(rng)
            labels = response_labels(17, 8, cfg.track.radius, torch.tensor(offset[None]).float())
            own = int(np.argmax(z[43, 43]))  # the exemplar's target colour channel
            seen = x[58:69, 58:69].reshape(-1, 3).max(0)  # the middle of the search crop
            assert (seen[own] > 100) == (share == 0.0)
            assert (labels.sum() > 0) == (share == 0.0)


def test_template_update_is_a_running_average_of_the_exemplars_found():
    """track.template_lr: the kernel after a frame is (1 - lr) * before + lr * the features of
    the exemplar crop at the new box; 0 keeps the first frame's."""
    from siamese.config import TrackConfig
    from siamese.data.crops import centre_of, context_size
    from siamese.tracking.tracker import SiamFCTracker

    torch.manual_seed(0)
    net = SiamFC(siamfc_small((3, 87, 87), width=4), exemplar=87, search=127).eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3)).astype(np.uint8) for _ in range(2)]
    box = np.array([60.0, 40.0, 24.0, 30.0])
    for lr in (0.0, 0.25):
        cfg = TrackConfig(exemplar=87, search=127, template_lr=lr)
        tracker = SiamFCTracker(net, cfg)
        tracker.init(frames[0], box)
        first = tracker.kernel.clone()
        new = tracker.update(frames[1])
        cx, cy = centre_of(new)
        side = context_size(new[2], new[3], cfg.context)
        with torch.no_grad():
            z = net.embed(torch.from_numpy(crop(frames[1], cx, cy, side, 87)[None])
                          .permute(0, 3, 1, 2).float())
        torch.testing.assert_close(tracker.kernel, (1 - lr) * first + lr * z, atol=1e-5,
                                   rtol=1e-5)


def test_nested_choice_never_looks_at_the_fold_it_scores(monkeypatch):
    """benchmarks/diagnostics/otb_tracker_settings.py: each fold gets the setting best on the
    others."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks" / "diagnostics"))
    from otb_tracker_settings import nested_choice

    fold_of = {"A": "A", "B": "B", "C-1": "C", "C-2": "C"}
    table = {"A": [0.9, 0.1], "B": [0.2, 0.5], "C-1": [0.3, 0.9], "C-2": [0.3, 0.8]}
    scores = [{(0, t): {"success_auc": v[i]} for t, v in table.items()} for i in range(2)]
    picks, nested = nested_choice(scores, fold_of)
    for fold in "ABC":  # brute force: the mean over the other folds' targets
        others = [t for t in table if fold_of[t] != fold]
        means = [np.mean([table[t][i] for t in others]) for i in range(2)]
        assert picks[fold] == int(np.argmax(means))
    assert picks == {"A": 1, "B": 1, "C": 0}  # A's own best (0) is not what A gets
    assert {t: v["success_auc"] for (_, t), v in nested.items()} == {
        "A": 0.1, "B": 0.5, "C-1": 0.3, "C-2": 0.3}


def test_looks_change_each_crops_light_within_its_bounds():
    """track.jitter: out = ((t - mean) * contrast + mean) * brightness * channel gain,
    clamped, on the device; the gains within exp(+-j) x exp(+-j/2), different per crop; a
    flip mirrors the crops and the offset's x; grey is the channels' mean."""
    from siamese.config import TrackConfig
    from siamese.training.track_pairs import TrackPairs, apply_looks

    pairs = TrackPairs([], TrackConfig(jitter=0.3), 64, 0)
    rng = np.random.default_rng(0)
    looks = torch.from_numpy(np.stack([pairs.looks(rng) for _ in range(64)]))
    plain = looks.clone()
    plain[:, :2] = 0  # no flip, no grey
    flat = torch.full((64, 4, 4, 3), 100, dtype=torch.uint8)
    z, x, _ = apply_looks(flat, flat, torch.zeros(64, 2), plain, torch.arange(64))
    gain = z[:, :, 0, 0] / 100.0
    assert gain.min() >= math.exp(-0.45) - 1e-6 and gain.max() <= math.exp(0.45) + 1e-6
    assert gain.std(0).min() > 0.05 and (gain[:, 0] != gain[:, 1]).all()
    assert not torch.allclose(z, x)  # exemplar and search crop: each its own light
    ramp = (torch.arange(48).reshape(4, 4, 3) * 5).to(torch.uint8)[None].repeat(64, 1, 1, 1)
    offsets = torch.randn(64, 2)
    z, x, off = apply_looks(ramp, ramp, offsets, looks, torch.arange(64))
    assert z.max() <= 255 and z.min() >= 0
    for i in range(8):  # the formula written out, crop by crop
        t = ramp[i].permute(2, 0, 1).float()
        if looks[i, 0] > 0.5:
            t = t.flip(-1)
        if looks[i, 1] > 0.5:
            t = t.mean(0, keepdim=True).expand(3, -1, -1)
        for out, c in ((z, 2), (x, 7)):
            m = t.mean()
            want = (((t - m) * looks[i, c] + m) * looks[i, c + 1]
                    * looks[i, c + 2:c + 5, None, None]).clamp(0, 255)
            torch.testing.assert_close(out[i], want, atol=1e-4, rtol=1e-5)
        sign = -1 if looks[i, 0] > 0.5 else 1
        assert off[i, 0] == sign * offsets[i, 0] and off[i, 1] == offsets[i, 1]
    assert 0.3 < (looks[:, 0] > 0.5).float().mean() < 0.7
    none = TrackPairs([], TrackConfig(jitter=0.0), 64, 0).looks(rng)
    assert (none[2:] == 1).all()  # no jitter: lit as it is


def test_a_corrupt_frame_met_in_training_leaves_no_run_folder(tmp_path, capsys):
    """(issue 43) the error names the frame, and the folder the run started is removed"""
    data = _sequences(tmp_path / "data", n=2, frames=12)
    for f in (data / "Seq1" / "img").glob("*.jpg"):
        f.write_bytes(f.read_bytes()[:100])  # every frame of one sequence cut short
    cfg = tmp_path / "t.toml"
    cfg.write_text("[track]\npairs_per_epoch = 32\nexemplar = 87\nsearch = 127\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--data", str(data), "--out", str(out),
                 *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Seq1" in err and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize("first", ["nan,nan,nan,nan", "0,0,1e12,1e12", "5,5,0,0"])
def test_an_otb_truth_without_a_first_box_is_refused_not_scored_zero(tracking_run, tmp_path,
                                                                      capsys, first):
    """(issue 43) a bad first ground-truth row gave a silent success AUC of 0.000"""
    run, data = tracking_run
    bad = shutil.copytree(data, tmp_path / "otb")
    truth = bad / "Seq1/groundtruth_rect.txt"
    truth.write_text(first + "\n" + "\n".join(truth.read_text().splitlines()[1:]) + "\n")
    out = tmp_path / "e"
    assert main(["evaluate", str(run), "--otb", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "first ground-truth box of Seq1" in err
    assert not (out / "otb_metrics.json").exists()
