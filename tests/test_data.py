import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import make_image_tree
from siamese.data.datasets import load_dataset
from siamese.errors import DataError


def test_image_folder_classes_and_values(image_tree):
    d = load_dataset(str(image_tree), image_size=10)
    assert d.classes == ["class_0", "class_1", "class_2"]
    assert d.x.shape == (18, 1, 10, 10) and d.kind == "image"
    assert float(d.x.min()) >= 0 and float(d.x.max()) <= 1
    assert np.bincount(d.y).tolist() == [6, 6, 6]


def test_zip_gives_the_same_data_as_the_folder(image_tree, tmp_path):
    z = tmp_path / "photos.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(image_tree.rglob("*.png")):
            zf.write(f, f"photos/{f.relative_to(image_tree).as_posix()}")
    a, b = load_dataset(str(image_tree), 10), load_dataset(str(z), 10)
    assert a.classes == b.classes and np.array_equal(a.y, b.y)
    assert np.allclose(a.x.numpy(), b.x.numpy())


def test_rgb_images_give_three_channels_and_mixed_sizes_are_resized(tmp_path):
    root = make_image_tree(tmp_path / "rgb", mode="RGB")
    Image.new("RGB", (40, 23), (255, 0, 0)).save(root / "class_0" / "big.jpg")
    Image.new("P", (5, 7)).save(root / "class_1" / "pal.bmp")
    d = load_dataset(str(root), 12)
    assert d.x.shape == (20, 3, 12, 12)


def test_nested_classes_keep_their_group(tmp_path):
    for alpha in ("Greek", "Latin"):
        for ch in ("character01", "character02"):
            p = tmp_path / "bg" / alpha / ch
            p.mkdir(parents=True)
            for i in range(2):
                Image.new("L", (8, 8), i * 100).save(p / f"{i}.png")
    d = load_dataset(str(tmp_path / "bg"), 8)
    assert d.classes[0] == "Greek/character01" and d.groups == ["Greek", "Greek", "Latin",
                                                                "Latin"]


def test_csv_and_npy_vectors(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    y = np.arange(12) % 3
    csv = tmp_path / "v.csv"
    csv.write_text("a,b,label,c\n" + "\n".join(
        f"{r[0]},{r[1]},cls{t},{r[2]}" for r, t in zip(x, y, strict=True)))
    d = load_dataset(str(csv))
    assert d.kind == "vector" and d.x.shape == (12, 3) and d.classes == ["cls0", "cls1", "cls2"]
    np.testing.assert_allclose(d.x.numpy(), x, rtol=1e-6)
    npy = tmp_path / "v.npy"
    np.save(npy, np.column_stack([x, y]))
    d2 = load_dataset(str(npy))
    assert d2.classes == ["0", "1", "2"] and np.array_equal(d2.y, y)


def test_digits_are_the_default():
    d = load_dataset("", image_size=8)
    assert len(d) == 1797 and d.classes == [str(i) for i in range(10)]


@pytest.mark.parametrize("case, match", [
    ("missing", "does not exist"),
    ("empty", "no images found"),
    ("corrupt", r"cannot read image .*bad\.png.*replace or remove"),
    ("loose", "not inside a class folder"),
    ("one_class", "only 1 class"),
    ("csv_label", "no column 'label'"),
    ("csv_text", "line 3 has a non-numeric feature"),
    ("bad_zip", "cannot read zip file"),
    ("bad_npy", "cannot read NPY file"),
])
def test_bad_data_gives_one_line_errors_naming_the_file(tmp_path, case, match):
    path = tmp_path / case
    if case == "empty":
        path.mkdir()
    elif case == "corrupt":
        make_image_tree(path)
        (path / "class_0" / "bad.png").write_bytes(b"not a png at all")
    elif case == "loose":
        make_image_tree(path)
        Image.new("L", (4, 4)).save(path / "loose.png")
    elif case == "one_class":
        make_image_tree(path, classes=1)
    elif case == "csv_label":
        path = tmp_path / "x.csv"
        path.write_text("a,b\n1,2\n")
    elif case == "csv_text":
        path = tmp_path / "x.csv"
        path.write_text("a,label\n1,x\nfoo,y\n")
    elif case == "bad_zip":
        path = tmp_path / "x.zip"
        path.write_bytes(b"PK\x03\x04 truncated")
    elif case == "bad_npy":
        path = tmp_path / "x.npy"
        path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=match) as e:
        load_dataset(str(path), 8)
    assert "\n" not in str(e.value)
