"""A run's gallery from the CLI and the API: enroll, search, identify (open set), reindex."""

import numpy as np
import pytest

import siamese
from conftest import digit_folder, digit_png
from siamese.cli import main
from siamese.index.enroll import (
    classify_embeddings,
    identify_embeddings,
    open_gallery,
    search_embeddings,
)


def test_gallery_cli_add_list_search_identify_remove(run_copy, tmp_path, capsys):
    folder = digit_folder(tmp_path / "enroll", per_class=3)
    assert main(["gallery", "add", str(run_copy), str(folder)]) == 0
    assert "enrolled 30 items (10 labels)" in capsys.readouterr().out
    assert main(["gallery", "list", str(run_copy)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("30 items") and len(lines) == 31
    query = folder / "3" / "0.png"
    assert main(["search", str(run_copy), str(query), "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1. 1.000  3  ")  # the enrolled image itself comes first
    assert main(["identify", str(run_copy), str(query)]) == 0
    assert capsys.readouterr().out.startswith("3 (similarity 1.000")
    first_id = lines[1].split("\t")[0]
    assert main(["gallery", "remove", str(run_copy), first_id]) == 0
    assert "the gallery has 29" in capsys.readouterr().out
    assert main(["gallery", "remove", str(run_copy), first_id]) == 2
    assert "no gallery item" in capsys.readouterr().err


def test_search_and_identify_match_brute_force(run_copy, tmp_path):
    model = siamese.load(run_copy)
    g = open_gallery(model)
    folder = digit_folder(tmp_path / "g", per_class=5)
    files = sorted(folder.rglob("*.png"))
    labels = [f.parent.name for f in files]
    emb = model.embed(files)
    g.add(emb, labels, [str(f) for f in files])
    q = model.embed([digit_png(tmp_path / "q.png", 100), digit_png(tmp_path / "r.png", 200)])
    res = search_embeddings(model, g, q, 4)
    for qi, matches in enumerate(res):
        brute = [float(model.score_embeddings(q[qi:qi + 1], emb[j:j + 1])[0])
                 for j in range(len(files))]
        want = np.argsort(brute)[::-1][:4]
        # the k best similarities, and each match really has its similarity (exact ties, e.g.
        # duplicate images, may come in either order)
        assert [m["similarity"] for m in matches] == pytest.approx([brute[j] for j in want],
                                                                   abs=1e-4)
        index = {str(f): j for j, f in enumerate(files)}
        assert [brute[index[m["source"]]] for m in matches] == pytest.approx(
            [m["similarity"] for m in matches], abs=1e-4)
    ident = identify_embeddings(model, g, q)
    for r, matches in zip(ident, res, strict=True):
        best = matches[0]
        assert r["label"] == (best["label"] if best["similarity"] >= model.threshold
                              else "unknown")
    cls = classify_embeddings(model, g, q)
    assert all(c["label"] in set(labels) for c in cls)


def test_identify_says_unknown_below_the_threshold(run_copy, tmp_path):
    model = siamese.load(run_copy)
    g = open_gallery(model)
    g.add(model.embed([digit_png(tmp_path / "a.png", 0)]), ["zero"])
    model.card["threshold"] = 1.01  # nothing can reach it
    assert identify_embeddings(model, g, model.embed([tmp_path / "a.png"]))[0]["label"] == \
        "unknown"
    model.card["threshold"] = 0.0
    assert identify_embeddings(model, g, model.embed([tmp_path / "a.png"]))[0]["label"] == "zero"


def test_gallery_of_other_weights_is_refused_until_reindexed(run_copy, tmp_path, capsys):
    folder = digit_folder(tmp_path / "enroll", per_class=2, classes=range(3))
    assert main(["gallery", "add", str(run_copy), str(folder)]) == 0
    # retrain the run's weights in place: the gallery's fingerprint no longer matches
    w = run_copy / "model.safetensors"
    from safetensors.torch import load_file, save_file

    t = load_file(str(w))
    t = {k: v + 0.01 if v.is_floating_point() else v for k, v in t.items()}
    save_file(t, str(w))
    capsys.readouterr()
    assert main(["gallery", "list", str(run_copy)]) == 2
    assert "other model weights" in capsys.readouterr().err
    assert main(["gallery", "reindex", str(run_copy)]) == 0
    assert main(["gallery", "list", str(run_copy)]) == 0
    assert capsys.readouterr().out.count("\n") >= 7
