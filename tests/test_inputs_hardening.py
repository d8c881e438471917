"""Inputs that never crash: bit depths, colour modes, MPO, decompression and zip bombs,
non-finite numbers, non-UTF-8 file names, crafted cards, CLI edge cases (issue: hardening,
items 6, 10, 13-18)."""

import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import siamese
from conftest import digit_folder, make_image_tree
from siamese.cli import main
from siamese.data.datasets import load_dataset
from siamese.data.images import MAX_MEMBER_BYTES, decode
from siamese.errors import ArtifactError, DataError

TINY = ["--image-size", "8", "--epochs", "1", "--quiet", "--embedding-dim", "8"]


def _digit(i=0) -> np.ndarray:
    from sklearn.datasets import load_digits

    return np.round(load_digits().images[i] / 16 * 255).astype(np.uint8)


def test_same_picture_in_8_and_16_bits_and_float_gives_the_same_input(tmp_path):
    a8 = np.kron(_digit(), np.ones((3, 3), np.uint8))
    Image.fromarray(a8).save(tmp_path / "8.png")
    Image.fromarray(a8.astype(np.uint16) * 257).save(tmp_path / "16.png")  # I;16 PNG
    Image.fromarray(a8.astype(np.float32) / 255).save(tmp_path / "f.tif")  # float TIFF
    ref = decode(tmp_path / "8.png", "8", 1, 16)
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    np.testing.assert_array_equal(decode(tmp_path / "16.png", "16", 1, 16), ref)
    np.testing.assert_array_equal(decode(tmp_path / "f.tif", "f", 1, 16), ref)
    # a dark 16-bit image is NOT stretched to its own range (it was: similarity 0.56)
    Image.fromarray((a8 // 4).astype(np.uint16) * 257).save(tmp_path / "dark16.png")
    Image.fromarray(a8 // 4).save(tmp_path / "dark8.png")
    np.testing.assert_array_equal(decode(tmp_path / "dark16.png", "d", 1, 16),
                                  decode(tmp_path / "dark8.png", "d", 1, 16))


def test_arrays_follow_the_same_mapping(run_copy):
    model = siamese.load(run_copy)
    a8 = _digit()
    ref = model.embed([a8])
    np.testing.assert_allclose(model.embed([a8.astype(np.uint16) * 257]), ref, atol=1e-6)
    np.testing.assert_allclose(model.embed([a8 / 255.0]), ref, atol=1e-6)
    with pytest.raises(DataError, match="nan or inf"):
        model.embed([np.full((8, 8), np.nan)])


def _lab_tiff(path: Path) -> Path:
    from PIL import ImageCms

    rgb = Image.fromarray(np.stack([np.kron(_digit(), np.ones((2, 2), np.uint8))] * 3, -1))
    t = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"),
                                "RGB", "LAB")
    ImageCms.applyTransform(rgb, t).save(path)
    assert Image.open(path).mode == "LAB"
    return path


def _mpo(path: Path) -> Path:
    img = Image.fromarray(np.kron(_digit(), np.ones((4, 4), np.uint8))).convert("RGB")
    img.save(path, "MPO", save_all=True, append_images=[img])
    assert Image.open(path).format == "MPO"
    return path


def test_lab_tiff_and_mpo_are_read(tmp_path, run_copy, capsys):
    lab, mpo = _lab_tiff(tmp_path / "lab.tif"), _mpo(tmp_path / "phone.jpg")
    assert decode(lab, "lab", 3, 16).shape == (3, 16, 16)
    assert main(["compare", str(run_copy), str(mpo), str(lab)]) == 0
    assert "similarity" in capsys.readouterr().out


def _png_with_size(path: Path, w: int, h: int) -> Path:
    """A small PNG whose header claims w x h pixels (only the header is ever read)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_in_a_training_folder_is_a_data_error(tmp_path):
    root = make_image_tree(tmp_path / "d")
    _png_with_size(root / "class_0" / "huge.png", 20000, 20000)
    with pytest.raises(DataError, match="huge.png.*pixels"):
        load_dataset(str(root), 8)
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "r"), *TINY]) == 2
    assert not (tmp_path / "r").exists()


def test_zip_bomb_is_refused_without_reading_it(tmp_path):
    root = make_image_tree(tmp_path / "d")
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, p.relative_to(root).as_posix())
        zf.writestr("class_1/zero.png", b"\0" * (MAX_MEMBER_BYTES + 1))
    assert z.stat().st_size < 1_000_000
    tracemalloc.start()
    with pytest.raises(DataError, match="zero.png.*MiB"):
        load_dataset(str(z), 8)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * 1024 * 1024  # never read: the old loader held every member at once


@pytest.mark.parametrize("kind", ["csv nan", "csv 1e39", "npy nan", "npy label nan"])
def test_non_finite_numbers_are_refused_before_the_run_folder(tmp_path, kind, capsys):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = np.arange(40) % 4
    if kind.startswith("csv"):
        path = tmp_path / "t.csv"
        rows = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{c}"
                                  for r, c in zip(x, y, strict=True)]
        rows[7] = rows[7].replace(rows[7].split(",")[1], "nan" if "nan" in kind else "1e39", 1)
        path.write_text("\n".join(rows) + "\n")
        where = "line 8"  # rows[7]: the header is line 1
    else:
        a = np.column_stack([x, y]).astype(np.float64)
        a[5, 3 if "label" in kind else 1] = np.nan
        path = tmp_path / "t.npy"
        np.save(path, a)
        where = "row 5"
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "r"), *TINY]) == 2
    err = capsys.readouterr().err
    assert where in err and "nan or inf" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_vectors_from_the_command_line_must_be_finite(tmp_path, capsys):
    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    path.write_text("a,b,label\n" + "".join(f"{rng.normal()},{rng.normal()},{i % 4}\n"
                                            for i in range(40)))
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "r"), *TINY]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "r"), "--", "nan,1", "1,2"]) == 2
    assert "nan or inf" in capsys.readouterr().err


def test_non_utf8_file_names_train_embed_and_enroll(tmp_path, run_copy, capsys):
    root = digit_folder(tmp_path / "d", per_class=6, classes=range(10))
    odd = root / "3" / os.fsdecode(b"caf\xe9-\xff.png")  # Latin-1 bytes, not UTF-8
    (root / "3" / "0.png").rename(odd)
    out = tmp_path / "r"
    assert main(["train", "--data", str(root), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["embed", str(out), str(root), "--out", str(tmp_path / "e.npy")]) == 0
    assert (tmp_path / "e.npy").exists()
    csv_bytes = (tmp_path / "e.csv").read_bytes()
    assert b"caf\xe9-\xff.png" in csv_bytes  # the exact bytes of the name, usable as a path
    assert main(["gallery", "add", str(run_copy), str(root / "3")]) == 2  # flat folder: label
    assert main(["gallery", "add", str(run_copy), str(root / "3"), "--label", "three"]) == 0
    assert main(["gallery", "list", str(run_copy)]) == 0
    assert "caf\ufffd-\ufffd.png" in capsys.readouterr().out


def test_crafted_cards_are_refused_before_anything_is_allocated(run_copy):
    card_path = run_copy / "card.json"
    good = json.loads(card_path.read_text())
    cases = [("input_shape", [1, 20000, 20000]), ("input_shape", [1, 8.5, 8]),
             ("std", [0.0]), ("mean", [1.0, 2.0]), ("kind", "audio")]
    for key, value in cases:
        card = json.loads(json.dumps(good))
        card["preprocessing"][key] = value
        card_path.write_text(json.dumps(card))
        with pytest.raises(ArtifactError, match="card.json is invalid"):
            siamese.load(run_copy)
    for t in (float("nan"), 7, "0.5"):
        card = json.loads(json.dumps(good))
        card["threshold"] = t
        card_path.write_text(json.dumps(card))
        with pytest.raises(ArtifactError, match="threshold"):
            siamese.load(run_copy)
    card = json.loads(json.dumps(good))
    card["config"]["model"]["width"] = 10**6
    card_path.write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="card.json is invalid.*model.width"):
        siamese.load(run_copy)


def test_search_k_and_a_closed_pipe(run_copy, tmp_path, capsys):
    folder = digit_folder(tmp_path / "g", per_class=2, classes=range(3))
    assert main(["gallery", "add", str(run_copy), str(folder)]) == 0
    q = str(folder / "1" / "0.png")
    for k in ("-1", "0"):
        assert main(["search", str(run_copy), q, "-k", k]) == 2
        assert "at least 1" in capsys.readouterr().err
    cmd = (f"{sys.executable} -m siamese gallery list {run_copy} | head -1")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("6 items") and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("as_zip", [False, True])
def test_include_exclude_choose_images_of_a_folder_or_zip(tmp_path, as_zip):
    root = make_image_tree(tmp_path / "d", classes=4, per_class=3)
    path = root
    if as_zip:
        path = tmp_path / "d.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for p in sorted(root.rglob("*.png")):
                zf.write(p, p.relative_to(root).as_posix())
    full = load_dataset(str(path), 8)
    some = load_dataset(str(path), 8, include="class_[012]/", exclude="class_1/")
    assert some.classes == ["class_0", "class_2"]
    assert some.sources == [s for s in full.sources if "class_0/" in s or "class_2/" in s]


def test_include_exclude_on_a_table_or_the_digits_is_refused(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n")
    for data in (["--data", str(table)], []):
        assert main(["train", *data, "--include", "x", "--out", str(tmp_path / "r"),
                     *TINY]) == 2
        err = capsys.readouterr().err
        assert "data.include / data.exclude choose files" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


# Issue 43: numbers and output paths checked before any work.
def test_numbers_outside_their_range_name_the_range():
    from siamese.errors import ConfigError
    from siamese.outputs import check_number

    for bad in ("nan", float("inf"), -1, 0, 11, "x", None):
        with pytest.raises(ConfigError, match=r"give a number in \[0.01, 10\]"):
            check_number("--hop", bad, 0.01, 10)
    assert check_number("--hop", "0.5", 0.01, 10) == 0.5


def test_outputs_that_are_folders_empty_or_shared_are_refused(tmp_path):
    from siamese.errors import ConfigError
    from siamese.outputs import check_outputs

    (tmp_path / "file").write_text("x")
    cases = [((("--out", ""),), "is empty"), ((("--out", str(tmp_path)),), "is a folder"),
             ((("--out", str(tmp_path / "d") + "/"),), "is a folder"),
             ((("--out", str(tmp_path / "file" / "b.txt")),), "is a file, not a folder"),
             ((("--out", str(tmp_path / "b.txt")), ("--confidence", str(tmp_path / "b.txt"))),
              "both name")]
    for outputs, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_outputs(*outputs)
    check_outputs(("--out", str(tmp_path / "new" / "b.txt")), ("--render", None))


def test_a_box_that_is_not_finite_or_far_too_big_is_refused():
    from siamese.data.otb import check_box
    from siamese.errors import DataError

    frame = np.zeros((240, 320, 3), np.uint8)
    for box, message in (([np.nan, 0, 10, 10], "4 finite numbers"),
                         ([0, 0, 1e12, 1e12], r"width in \(0, 640\]"),
                         ([0, 0, 10], "4 finite numbers")):
        with pytest.raises(DataError, match=message):
            check_box(np.asarray(box, dtype=np.float64), frame)
    check_box(np.asarray([10, 10, 50, 40.0]), frame)


def test_errors_carry_no_object_reprs():
    """(issue 43) soundfile names a BytesIO by its repr; the message says "the upload"."""
    import io

    from siamese.errors import DataError

    e = DataError(f"cannot read audio file x (Error opening {io.BytesIO()!r}: Format not "
                  "recognised)")
    assert "object at 0x" not in str(e) and "Error opening the upload" in str(e)


def test_a_flac_whose_header_leaves_its_length_out_is_read_to_its_limit():
    """(issue 43) such a header reports libsndfile's largest count (576460752303424 s): the
    file is read, and a limit is met while reading, not from the header"""
    import soundfile

    from siamese.data.audio import TooLong, audio_header, read_audio

    buf = io.BytesIO()
    soundfile.write(buf, np.sin(np.arange(16000) / 5) * 0.3, 16000, format="FLAC")
    b = bytearray(buf.getvalue())
    b[8 + 13] &= 0xF0  # STREAMINFO's total samples (36 bits) set to 0: "unknown"
    b[8 + 14:8 + 18] = bytes(4)
    assert soundfile.info(io.BytesIO(bytes(b))).frames > 2**60
    assert audio_header(bytes(b), "s.flac") == ("FLAC", 0.0)
    a = read_audio(bytes(b), "s.flac", 16000)
    assert 16000 - 1024 < len(a) <= 16000
    with pytest.raises(TooLong, match="lasts more than 0.5 s"):
        read_audio(bytes(b), "s.flac", 16000, max_seconds=0.5)
