"""The CRF against brute-force enumeration of every tag path on small random cases."""

from __future__ import annotations

import itertools

import pytest
import torch

from bertlstm.tasks.tag.crf import CRF, NEG_INF, allowed_transitions

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _crf(num_tags: int, seed: int, allowed=None) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(num_tags, allowed)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def _brute_force(crf: CRF, emissions: torch.Tensor, length: int, constrained: bool) -> tuple[float, list[int]]:
    """log Z and the best path of one sentence, by scoring every path."""
    start, trans, end = (t.detach() for t in crf._scores(constrained))
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=length):
        s = start[path[0]] + end[path[-1]] + sum(emissions[t, path[t]] for t in range(length))
        s = s + sum(trans[path[t - 1], path[t]] for t in range(1, length))
        scores[path] = float(s)
    values = torch.tensor(list(scores.values()), dtype=torch.float64)
    return float(torch.logsumexp(values, 0)), list(max(scores, key=scores.get))


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_log_partition_and_viterbi_match_brute_force(seed: int, constrained: bool) -> None:
    crf = _crf(len(TAGS), seed, allowed_transitions(TAGS))
    lengths = [4, 1, 3, 2]  # padded batch: sentences of different lengths
    emissions = torch.randn(len(lengths), max(lengths), len(TAGS), generator=torch.Generator().manual_seed(seed))
    mask = torch.arange(max(lengths)) < torch.tensor(lengths).unsqueeze(1)
    log_z = crf.log_partition(emissions, mask, constrained)
    paths = crf.decode(emissions, mask, constrained)
    for i, n in enumerate(lengths):
        expected_z, expected_path = _brute_force(crf, emissions[i], n, constrained)
        assert log_z[i].item() == pytest.approx(expected_z, abs=1e-4)
        assert paths[i, :n].tolist() == expected_path
        assert paths[i, n:].eq(0).all()


def test_nll_is_the_gold_paths_negative_log_probability() -> None:
    crf = _crf(3, 7)
    emissions = torch.randn(2, 3, 3)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    tags = torch.tensor([[0, 2, 1], [1, 1, 2]])  # the padding position's tag must not matter
    nll = crf.nll(emissions, tags, mask)
    expected = 0.0
    for i, n in enumerate([3, 2]):
        log_z, _ = _brute_force(crf, emissions[i], n, False)
        start, trans, end = (t.detach() for t in crf._scores(False))
        path = tags[i, :n].tolist()
        score = start[path[0]] + end[path[-1]] + sum(emissions[i, t, path[t]] for t in range(n))
        score = score + sum(trans[path[t - 1], path[t]] for t in range(1, n))
        expected += log_z - float(score)
    assert nll.item() == pytest.approx(expected, abs=1e-4)
    other = tags.clone()
    other[1, 2] = 0
    assert crf.nll(emissions, other, mask).item() == pytest.approx(nll.item(), abs=1e-6)


def test_constrained_decoding_never_makes_an_invalid_move() -> None:
    crf = _crf(len(TAGS), 3, allowed_transitions(TAGS))
    with torch.no_grad():  # make the forbidden O -> I-PER very attractive
        crf.transitions[0, 2] = 50.0
        crf.start[2] = 50.0
    emissions = torch.randn(8, 6, len(TAGS))
    mask = torch.ones(8, 6, dtype=torch.bool)
    free, constrained = crf.decode(emissions, mask, constrained=False), crf.decode(emissions, mask)
    assert (free == 2).any()  # without the rules, the invalid tag wins
    for row in constrained.tolist():
        tags = [TAGS[t] for t in row]
        for prev, tag in zip(["<start>", *tags], tags, strict=False):
            if tag.startswith("I-"):
                assert prev in ("B-" + tag[2:], tag), tags


def test_allowed_transitions_for_bioes() -> None:
    tags = ["O", "B-X", "I-X", "E-X", "S-X"]
    start, trans, end = allowed_transitions(tags)
    assert start.tolist() == [True, True, False, False, True]
    assert end.tolist() == [True, False, False, True, True]
    ok = {(a, b) for i, a in enumerate(tags) for j, b in enumerate(tags) if trans[i, j]}
    assert ("B-X", "I-X") in ok and ("B-X", "E-X") in ok and ("I-X", "E-X") in ok
    assert ("B-X", "O") not in ok and ("O", "E-X") not in ok and ("E-X", "B-X") in ok and ("S-X", "S-X") in ok
    assert NEG_INF < -1e3
