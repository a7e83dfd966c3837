#!/usr/bin/env python3
"""Committee security by simulation: an attacker's weight, majority, lone commits and leads.

For attacker stake 10/20/30/40% split over 1, 10, 30 and 100 nodes, against honest
stake concentrated (4 nodes) or spread (100 nodes), draws many committees with the
contract's own seat-weight and leader-score maths (``flare_chain.committee.sortition``,
pinned bit for bit to ``VrfSortitionCommittee.sol`` by tests/contracts/test_seat_weights.py)
and reports the attacker's share of the weight, its share of leads, how often it holds a
majority of the weight and how often it could commit alone, next to the exact Poisson model
(``sortition.committee_risk``) with a 99% interval for the simulated frequency.

VRF outputs are drawn as uniform 256-bit values from a seeded generator: an honest ECVRF
output is indistinguishable from one, and the seat weight depends on the output only.

The second table is the owner who picks the opening block (``--grind`` blocks to choose
from), allied with the attacker. It knows its own keys, so for each block it could open in
it computes the attacker's weight on the seed that block would give, and opens in the best.
Under the old rule (seats drawn on the round seed, fixed by the opening block) that choice
is the draw; under the claim-seed rule the draw is on the round seed mixed with the hash of
the submission deadline block, unknown when the round opens, so the choice changes nothing.
A node's output is modelled as sha256(node ‖ seed), the VRF's role. Not yet here (issue 12,
item 8): the same runs on the in-process chain with real proofs.

    python scripts/bench_committee.py              # about a minute on 2 cores
    python scripts/bench_committee.py --rounds 2000 --k 20
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
from collections.abc import Sequence

from flare_chain.committee import sortition

TOTAL_STAKE = 10**24
SHARES = (0.1, 0.2, 0.3, 0.4)
SPLITS = (1, 10, 30, 100)
HONEST_LAYOUTS = (("concentrated", 4), ("spread", 100))


def _stakes(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` equal stakes (the last takes the remainder)."""
    each = total // parts
    return [each] * (parts - 1) + [total - each * (parts - 1)]


def simulate(share: float, attackers: int, honest: int, *, k: int, rounds: int, threshold_bps: int,
             rng: random.Random) -> dict[str, float]:
    bad_total = round(TOTAL_STAKE * share)
    stakes = [(True, s) for s in _stakes(bad_total, attackers)] + [
        (False, s) for s in _stakes(TOTAL_STAKE - bad_total, honest)]
    bad_weight = all_weight = majority = alone = led = 0
    for _ in range(rounds):
        a = h = 0
        best: tuple[int, bool] | None = None
        for is_bad, stake in stakes:
            output = rng.getrandbits(256)
            weight = sortition.seat_weight(output, k, stake, TOTAL_STAKE)
            if weight == 0:
                continue
            score = sortition.leader_score(output, weight)
            if best is None or score < best[0]:
                best = (score, is_bad)
            if is_bad:
                a += weight
            else:
                h += weight
        bad_weight += a
        all_weight += a + h
        majority += a > h
        alone += a + h > 0 and a * sortition.BPS >= threshold_bps * (a + h)
        led += best is not None and best[1]
    return {"weight_share": bad_weight / max(all_weight, 1), "majority": majority / rounds,
            "alone": alone / rounds, "leads": led / rounds}


def _outputs(nodes: int, seed: bytes, tag: bytes) -> list[int]:
    """Each node's VRF output on ``seed`` (modelled: sha256(tag ‖ node ‖ seed), uniform and unpredictable)."""
    return [int.from_bytes(hashlib.sha256(tag + i.to_bytes(4, "big") + seed).digest(), "big") for i in range(nodes)]


def owner_grinds(share: float, attackers: int, honest: int, *, k: int, rounds: int, grind: int,
                 claim_seed_rule: bool, rng: random.Random) -> float:
    """The attacker's share of the seated weight when its ally, the owner, picks the opening block among ``grind``.

    Each candidate block gives a round seed; the owner evaluates its own nodes' weights on it and
    opens on the best. With ``claim_seed_rule`` the seats are then drawn on
    ``sortition.claim_seed(round_seed, deadline_block_hash)``, with a hash nobody knew at opening.
    """
    bad_total = round(TOTAL_STAKE * share)
    bad_stakes, good_stakes = _stakes(bad_total, attackers), _stakes(TOTAL_STAKE - bad_total, honest)

    def weights(stakes: list[int], seed: bytes, tag: bytes) -> int:
        return sum(sortition.seat_weight(out, k, stake, TOTAL_STAKE)
                   for out, stake in zip(_outputs(len(stakes), seed, tag), stakes, strict=True))

    bad_weight = all_weight = 0
    for _ in range(rounds):
        candidates = [rng.randbytes(32) for _ in range(grind)]  # the round seed of each block it could open in
        chosen = max(candidates, key=lambda seed: weights(bad_stakes, seed, b"attacker"))
        drawn_on = sortition.claim_seed(chosen, rng.randbytes(32)) if claim_seed_rule else chosen
        a, h = weights(bad_stakes, drawn_on, b"attacker"), weights(good_stakes, drawn_on, b"honest")
        bad_weight += a
        all_weight += a + h
    return bad_weight / max(all_weight, 1)


def _interval(p: float, n: int) -> float:
    """Half-width of a 99% normal interval for a frequency with probability ``p`` over ``n`` trials."""
    return 2.576 * math.sqrt(max(p * (1 - p), 1e-12) / n)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=20, help="expected committee size (default 20)")
    parser.add_argument("--rounds", type=int, default=400, help="committees drawn per cell (default 400)")
    parser.add_argument("--threshold-bps", type=int, default=6666)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--grind", type=int, default=10,
                        help="blocks the owner may choose the opening block from (default 10; 0 skips the table)")
    parser.add_argument("--grind-rounds", type=int, default=300, help="rounds per cell of the owner table")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    print(f"k = {args.k}, {args.rounds} committees per cell, threshold {args.threshold_bps} bps; "
          "model = exact Poisson (sortition.committee_risk), ± = 99% interval of the simulated frequency")
    header = (f"{'honest':>13} {'stake':>5} {'split':>5} {'weight':>7} {'leads':>7} "
              f"{'majority':>9} {'model':>7} {'alone':>7} {'model':>9} {'±':>7}")
    print(header)
    worst = 0.0
    for layout, honest in HONEST_LAYOUTS:
        for share in SHARES:
            risk = sortition.committee_risk(args.k, share, threshold_bps=args.threshold_bps)
            for split in SPLITS:
                got = simulate(share, split, honest, k=args.k, rounds=args.rounds,
                               threshold_bps=args.threshold_bps, rng=rng)
                worst = max(worst, abs(got["weight_share"] / share - 1))
                print(f"{layout:>13} {share:>5.0%} {split:>5} {got['weight_share']:>7.3f} {got['leads']:>7.3f} "
                      f"{got['majority']:>9.4f} {risk.majority:>7.4f} {got['alone']:>7.4f} {risk.capture:>9.2e} "
                      f"{_interval(risk.capture, args.rounds):>7.4f}")
    print(f"\nlargest relative gap between weight share and stake share: {worst:.1%}")
    if args.grind > 0:
        print(f"\nthe owner, allied with the attacker, opens each round in the best of {args.grind} blocks "
              f"(honest stake spread over 100 nodes, {args.grind_rounds} rounds per cell): attacker's weight share")
        print(f"{'stake':>5} {'split':>5} {'round seed (old)':>17} {'claim seed (new)':>17}")
        for share in SHARES:
            for split in (1, 10):
                old, new = (owner_grinds(share, split, 100, k=args.k, rounds=args.grind_rounds, grind=args.grind,
                                         claim_seed_rule=rule, rng=rng) for rule in (False, True))
                print(f"{share:>5.0%} {split:>5} {old:>17.3f} {new:>17.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
