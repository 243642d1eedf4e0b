"""The hand-written training pairs for the memory search (data/train/paraphrase_train.jsonl) pass their checker and
share nothing with the evaluation pairs (data/needles/): no answer, fact, question or surname."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "data" / "train" / "paraphrase_train.jsonl"
EVAL = [ROOT / "data" / "needles" / "paraphrase.jsonl", ROOT / "data" / "needles" / "literal.jsonl"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_training_pairs_pass_their_checker():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "data" / "check_paraphrase_train.py"), str(TRAIN)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]


def test_training_and_evaluation_pairs_share_no_answer_sentence_or_surname():
    train, evaluation = rows(TRAIN), [r for p in EVAL for r in rows(p)]
    assert len(train) >= 400
    # answers and surnames (the last word of an answer; a common first name such as "Amos" may recur)
    names = lambda r: {a.lower() for a in r["answers"]} | {a.split()[-1].lower() for a in r["answers"]}  # noqa: E731
    eval_names = set().union(*map(names, evaluation))
    eval_text = {r[k].lower() for r in evaluation for k in ("fact", "question")}
    for r in train:
        assert not names(r) & eval_names, r["id"]
        assert r["fact"].lower() not in eval_text and r["question"].lower() not in eval_text, r["id"]


def test_the_book_questions_are_about_training_books_only_and_pass_their_checker():
    """Questions about the books' own sentences come from the five books the search is trained on, never from a
    tuning or report book (the checker also finds each sentence once in its book where ../shared is present)."""
    questions = rows(ROOT / "data" / "train" / "book_questions.jsonl")
    training = {"dracula.txt", "moby_dick.txt", "war_and_peace.txt", "middlemarch.txt", "a_tale_of_two_cities.txt"}
    assert len(questions) >= 250 and {q["book"] for q in questions} == training
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "data" / "check_book_questions.py")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
