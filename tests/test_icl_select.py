"""Learning how to classify from held-out demonstrations (``icl_select.py``, ``icl_combine.py``, the ``auto`` mode)."""
import pytest
import torch

from longmem_core.classify import icl, icl_combine, icl_modes, icl_select, key_scores
from longmem_core.classify.settings import MODE, SELECTION
from test_icl import DEMOS, TEST


def _classifier(model, demos=DEMOS, k=3, seed=2, modes=("auto",)):
    bank = model.new_bank(capacity=4096)
    memory = icl.memorize_demonstrations(model, demos, bank)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, icl.sample_context(demos, k, seed))
    return icl_modes.ModeClassifier(model, icl.label_set(demos), icl.SENTIMENT_TEMPLATE, context, bank, memory,
                                    modes, k, MODE.neighbours)


def test_macro_f1_weighs_every_label_alike():
    assert icl_select.macro_f1(["a", "a", "b"], ["a", "a", "b"]) == 1
    # always "a" on 9 a's and one b: accuracy 0.9, but b's F1 is 0 and a's 18/19
    assert icl_select.macro_f1(["a"] * 9 + ["b"], ["a"] * 10) == pytest.approx((18 / 19 + 0) / 2)
    assert icl_select.macro_f1([], []) == 0


def test_stratified_sample_keeps_each_labels_share_and_every_label():
    labels = ["a"] * 80 + ["b"] * 15 + ["c"] * 5
    picked = icl_select.stratified_sample(labels, range(100), 20, seed=3)
    counts = {x: sum(labels[i] == x for i in picked) for x in "abc"}
    assert len(picked) == 20 and counts == {"a": 16, "b": 3, "c": 1}
    assert picked == icl_select.stratified_sample(labels, range(100), 20, seed=3) == sorted(picked)
    assert set(icl_select.stratified_sample(labels, range(100), 20, seed=4)) != set(picked)
    rare = ["a"] * 99 + ["c"]
    assert 99 in icl_select.stratified_sample(rare, range(100), 10)  # a rare label is held out at least once
    assert icl_select.stratified_sample(labels, [1, 2, 90], 20) == [1, 2, 90]  # fewer than n: all of them


def test_selection_holds_out_no_demonstration_of_the_prompt(tiny_model):
    classifier = _classifier(tiny_model)
    selection = classifier.select()
    in_prompt = [i for i, d in enumerate(DEMOS) if icl.format_demonstration(icl.SENTIMENT_TEMPLATE, *d)
                 in classifier.context]
    assert len(in_prompt) == 3 and not set(in_prompt) & set(selection.indices)
    assert selection.held_out == len(DEMOS) - 3 == len(selection.indices)
    choices = {*SELECTION.candidates, icl_select.COMBINED}
    assert selection.chosen in choices and set(selection.accuracy) == choices
    assert set(selection.weights) == set(icl_combine.EXPERTS) and all(w >= 0 for w in selection.weights.values())
    assert all(0 <= a <= 1 for a in selection.accuracy.values()) and set(selection.macro_f1) == set(selection.accuracy)
    assert selection.few and "few examples" in selection.reason and selection.seconds > 0
    assert classifier.select() is selection  # made once
    assert "indices" not in selection.to_dict() and selection.to_dict()["chosen"] == selection.chosen
    assert "combination" not in selection.to_dict(detail=True) and "weights" in selection.to_dict()


def test_held_out_texts_are_read_as_test_texts(tiny_model, monkeypatch):
    classifier = _classifier(tiny_model)
    read, real = [], key_scores.text_keys
    monkeypatch.setattr(key_scores, "text_keys", lambda *a: read.append(list(a[1])) or real(*a))
    selection = classifier.select()
    assert read == [[DEMOS[i][0] for i in selection.indices]]  # every held-out text's key read as a test text's
    assert classifier.seconds["key"] == 0  # ... counted as choosing, not as classifying


def _one_at_a_time(monkeypatch) -> None:
    """``select`` as it was before it read in batches: each held-out text's key (``text_key``) and label scores
    (``classify`` after the cached prompt) read alone."""
    def keys(model, texts, template):
        return torch.stack([key_scores.text_key(model, t, template) for t in texts])

    def scores(model, texts, labels, *, context, template, cache):
        return torch.tensor([[icl.classify(model, t, labels, context=context, template=template, top=0,
                                           cache=cache).scores[label] for label in labels] for t in texts])
    monkeypatch.setattr(key_scores, "text_keys", keys)
    monkeypatch.setattr(icl_select, "label_scores", scores)


def test_batched_selection_equals_one_text_at_a_time(tiny_model, monkeypatch):
    demos = DEMOS + [(t + " , again", g) for t, g in DEMOS] + TEST  # 16 held out: two batches of label rows
    labels = icl.label_set(demos)
    batched = icl_select.select(_classifier(tiny_model, demos), seed=1)
    assert batched.held_out == len(demos) - 3
    with monkeypatch.context() as patched:
        _one_at_a_time(patched)
        alone = icl_select.select(_classifier(tiny_model, demos), seed=1)
    assert (batched.chosen, batched.indices, batched.predictions) == (alone.chosen, alone.indices, alone.predictions)
    assert batched.accuracy == alone.accuracy and batched.macro_f1 == alone.macro_f1
    assert set(batched.predictions["context"]) <= set(labels)


def test_auto_predicts_with_the_learned_combination(tiny_model):
    classifier = _classifier(tiny_model)
    selection = classifier.select()
    for text, _ in TEST:
        out = classifier.predict(text, ("auto", *SELECTION.candidates))
        assert selection.chosen == icl_select.COMBINED
        # the combination's distribution from the single modes' own parts for this text
        key = classifier.query_key(text)
        cosines = classifier.centroids @ key_scores.centre_query(classifier.centred, key)
        votes = torch.tensor([out["knn"].scores[label] for label in classifier.labels])
        calibrated = torch.tensor([out["context_cal"].scores[label] for label in classifier.labels]).exp()
        expected = selection.combination.distribution(icl_combine.features(calibrated[None], cosines[None],
                                                                           votes[None]))[0]
        got = torch.tensor([out["auto"].scores[label] for label in classifier.labels]).exp()
        assert torch.allclose(got, expected, atol=1e-5)


def test_the_combination_leans_on_the_expert_that_knows(tiny_model, monkeypatch):
    classifier = _classifier(tiny_model)
    # the keys lean towards their label's direction, not so far that the start's weights are already sure
    onehot = key_scores.label_onehot(classifier.keys.memory, classifier.labels)
    noise = torch.randn(onehot.shape[0], 16, generator=torch.Generator().manual_seed(0))
    classifier.keys.keys = torch.nn.functional.normalize(torch.cat([onehot, 0.3 * noise], 1), dim=-1)
    classifier.centred = key_scores.centred(classifier.keys)
    wrong = {label: -5.0 if label == "positive" else 0.0 for label in classifier.labels}  # always "negative"
    monkeypatch.setattr(icl_select, "label_scores",  # [N, L]
                        lambda model, texts, labels, **k: torch.tensor([[wrong[x] for x in labels]] * len(texts)))
    learned = icl_select.select(classifier, read_keys=False)  # the stored keys stand in for the texts'

    assert learned.chosen == icl_select.COMBINED and "combination learned on" in learned.reason
    assert learned.accuracy["centroid"] == 1 and learned.accuracy["context"] < 1
    assert learned.accuracy[icl_select.COMBINED] == 1  # each held-out text right, fitted without it
    # the in-context scores say nothing: their weight falls below its start, the keys' rise above theirs
    start = dict(zip(icl_combine.EXPERTS, icl_combine.START))
    assert learned.weights["context_cal"] < start["context_cal"]
    assert learned.weights["centroid"] > start["centroid"] or learned.weights["knn"] > start["knn"]


def test_nothing_held_out_keeps_the_fallback(tiny_model):
    classifier = _classifier(tiny_model, k=len(DEMOS))  # every demonstration in the prompt
    selection = classifier.select()
    assert selection.chosen == SELECTION.fallback and selection.held_out == 0 and selection.few
    assert "none could be held out" in selection.reason


def test_evaluate_modes_reports_the_choice_and_its_time(tiny_model):
    result = icl_modes.evaluate_modes(tiny_model, TEST, DEMOS, k=3, seed=2,
                                      modes=("context", "centroid_context", "knn", "auto"))
    assert result.selection["chosen"] in {*SELECTION.candidates, icl_select.COMBINED}
    assert result.selection["chosen"] == icl_select.COMBINED
    assert result.seconds["key"] > 0 and result.seconds["context"] > 0 and result.seconds["memory"] == 0
    assert set(result.macro_f1) == set(result.predictions)
