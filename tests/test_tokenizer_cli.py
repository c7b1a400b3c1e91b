"""`python -m tokenizer`: train, encode and decode from the command line (run in-process)."""

import pytest
from test_tokenizer_bpe import CORPUS

from tokenizer import BPETokenizer
from tokenizer.__main__ import main


def run(capsys, *argv) -> str:
    main([str(arg) for arg in argv])
    return capsys.readouterr().out


def test_train_encode_decode(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    run(capsys, "train", "--input", corpus, "--vocab-size", 300, "--pattern", "gpt2", "--out", tmp_path / "tok")
    trained = BPETokenizer.load(tmp_path / "tok.model")
    assert len(trained.merges) == 44 and (tmp_path / "tok.vocab").exists()

    sample = tmp_path / "sample.txt"
    sample.write_text("Speak, speak 😀\n", encoding="utf-8")
    ids = run(capsys, "encode", "--model", tmp_path / "tok.model", "--input", sample)
    assert [int(word) for word in ids.split()] == trained.encode("Speak, speak 😀\n")

    id_file = tmp_path / "ids.txt"
    id_file.write_text(ids)
    assert run(capsys, "decode", "--model", tmp_path / "tok.model", "--input", id_file) == "Speak, speak 😀\n"


def test_char_kind(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abcabc", encoding="utf-8")
    run(capsys, "train", "--input", corpus, "--kind", "char", "--out", tmp_path / "char")
    assert run(capsys, "encode", "--model", tmp_path / "char.model", "--input", corpus) == "0 1 2 0 1 2\n"


@pytest.mark.parametrize("argv, expected", [
    (["--help"], ["train", "encode", "decode"]),
    (["train", "--help"], ["--input", "--vocab-size", "--pattern", "--out", "progress bar"]),
    (["encode", "--help"], ["--model", "--allowed-special", "none_raise"]),
    (["decode", "--help"], ["--model", "whitespace"]),
])
def test_help_explains_each_command(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(word in out for word in expected)


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["encode", "--model", str(tmp_path / "missing.model")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing.model" in err and "Traceback" not in err
    bad_ids = tmp_path / "ids.txt"
    bad_ids.write_text("1 2 x")
    model = BPETokenizer().train("abc", 256).save(tmp_path / "tok")
    with pytest.raises(SystemExit):
        main(["decode", "--model", str(model), "--input", str(bad_ids)])
    assert "got 'x'" in capsys.readouterr().err
