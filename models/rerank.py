"""Business-rule reranking: model scores times a catalog-driven factor, normalised.

Each candidate's raw model score ``s`` becomes a preference ``exp(s - max s)`` (a softmax
up to its constant, which the normalisation cancels), is multiplied by a business factor
built from its catalog record (margin, promotion; capped), and the results are divided by
the best one, so the top item scores exactly 1.0. Items that break a hard rule (sold
out, priced outside the policy) are dropped first; a per-category cap then keeps the list
diverse. The work is done in log space, so scores far below the best never underflow
into ties: the order stays exact and the reported score bottoms out at ``SCORE_FLOOR``.

Non-finite raw scores: NaN candidates are dropped; ``-inf`` is how models mask an item
out (padding, already bought), so those are dropped too; ``+inf`` items rank above every
finite one, and among themselves by business factor.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

RULE_PROMO = "promo"
RULE_MARGIN = "margin"

# The smallest positive normal double: a final score never reaches 0, so every
# emitted score lies in (0, 1].
SCORE_FLOOR = sys.float_info.min


def _float(value: str | float | None) -> float | None:
    """A finite float from a stored value, None when missing or unparsable."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: str | float | None) -> int | None:
    """An integer from a stored value ("12" or "12.0"), None when missing or not whole."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    number = _float(value)
    return int(number) if number is not None and number.is_integer() else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class Product:
    """The catalog fields the rules read; None means unknown."""

    item_id: str
    category: str = ""  # category path joined by "/", "" when uncategorised
    price: float | None = None
    stock: int | None = None  # None = not tracked, never dropped for stock
    margin: float | None = None  # profit margin share, e.g. 0.3
    promo: float | None = None  # promotion factor while a promotion runs, e.g. 1.5

    @classmethod
    def from_meta(cls, item_id: str, meta: Mapping[str, str]) -> Product:
        """Read an item's catalog hash (all values strings); bad numbers become None.

        >>> p = Product.from_meta("i1", {"category": "Home/Knives", "price": "9.5", "stock": "x"})
        >>> p.category, p.price, p.stock
        ('Home/Knives', 9.5, None)
        """
        category = meta.get("category")
        return cls(
            item_id=item_id,
            category=category if isinstance(category, str) else "",
            price=_float(meta.get("price")),
            stock=_int(meta.get("stock")),
            margin=_float(meta.get("margin")),
            promo=_float(meta.get("promo")),
        )


def _check_number(name: str, value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number (got {value!r})")


def _check_count(name: str, value: int | None, minimum: int) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < minimum
    ):
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")


@dataclass(frozen=True)
class RerankConfig:
    """Which business rules apply and how strongly."""

    drop_out_of_stock: bool = True  # stock <= 0 -> dropped (oversold counts as sold out)
    min_price: float | None = None  # price policy: items priced outside [min, max] dropped
    max_price: float | None = None
    drop_unpriced: bool = False  # with a price policy, whether an unknown price is dropped
    margin_weight: float = 0.0  # factor *= 1 + margin_weight * max(margin, 0)
    promo_boost: bool = True  # factor *= promo when promo > 1
    max_factor: float = 5.0  # cap on the combined business factor
    max_per_category: int | None = None  # diversity cap on items per category in the output
    category_depth: int = 1  # categories compared on the first N path levels

    def __post_init__(self) -> None:
        _check_number("min_price", self.min_price)
        _check_number("max_price", self.max_price)
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise ValueError(
                f"min_price must be <= max_price (got {self.min_price} > {self.max_price})"
            )
        _check_number("margin_weight", self.margin_weight)
        if self.margin_weight < 0:
            raise ValueError(f"margin_weight must be >= 0 (got {self.margin_weight})")
        _check_number("max_factor", self.max_factor)
        # A cap below 1 would flatten every item to the same factor, erasing the model's order.
        if self.max_factor < 1:
            raise ValueError(f"max_factor must be >= 1 (got {self.max_factor})")
        _check_count("max_per_category", self.max_per_category, 1)
        _check_count("category_depth", self.category_depth, 1)

    @property
    def price_policy(self) -> bool:
        return self.min_price is not None or self.max_price is not None


# Tuples, not frozen dataclasses: tens of them are built per recommendation on the hot
# path, and a frozen dataclass's __init__ costs several times more.
class Candidate(NamedTuple):
    """One scored item from a model."""

    item_id: str
    score: float  # raw model score: any real number (logits may be negative)
    reason: str  # e.g. "because_you_bought:X", "trending"


class Reranked(NamedTuple):
    """One item of the final list."""

    item_id: str
    score: float  # in (0, 1], best first; the best is 1.0
    reason: str  # the candidate's reason
    rule: str | None  # the rule that boosted it most (RULE_PROMO or RULE_MARGIN), or None


def dropped(product: Product, config: RerankConfig) -> bool:
    """Whether a hard rule removes the item whatever its score."""
    if config.drop_out_of_stock and product.stock is not None and product.stock <= 0:
        return True
    if not config.price_policy:
        return False
    price = _finite(product.price)
    if price is None:
        return config.drop_unpriced
    return (config.min_price is not None and price < config.min_price) or (
        config.max_price is not None and price > config.max_price
    )


def factor(product: Product, config: RerankConfig) -> tuple[float, str | None]:
    """The capped business factor (>= 1) and the rule that contributed most to it.

    >>> factor(Product("i", margin=0.5, promo=2.0), RerankConfig(margin_weight=1.0))
    (3.0, 'promo')
    """
    by_margin = by_promo = 1.0
    margin = _finite(product.margin)
    if config.margin_weight > 0 and margin is not None:
        by_margin = 1.0 + config.margin_weight * max(margin, 0.0)
    promo = _finite(product.promo)
    if config.promo_boost and promo is not None and promo > 1.0:
        by_promo = promo
    total = min(by_margin * by_promo, config.max_factor)
    if by_promo > 1.0 and by_promo >= by_margin:
        return total, RULE_PROMO
    if by_margin > 1.0:
        return total, RULE_MARGIN
    return total, None


def category_key(category: str, depth: int) -> str:
    """The first ``depth`` levels of a "/"-joined category path.

    >>> category_key("Home/Kitchen/Knives", 2)
    'Home/Kitchen'
    """
    return "/".join(category.split("/")[:depth])


def _log_preference(score: float, top: float) -> float:
    """log exp(score - top); with a +inf top only +inf scores keep any preference."""
    if top < math.inf:
        # Overflows to -inf only for spreads near the float range: such items rank last.
        return score - top
    return 0.0 if score == math.inf else -math.inf


class Rule(NamedTuple):
    """What the business rules say about one item, computed once per catalog refresh."""

    dropped: bool
    log_factor: float  # log of the capped business factor
    rule: str | None
    group: str  # category key for the diversity cap; "" = uncategorised (exempt)


def rule_of(product: Product, config: RerankConfig) -> Rule:
    """The rules' verdict on one item under ``config``.

    >>> rule_of(Product("i", category="Toys/Cars", promo=2.0), RerankConfig())
    Rule(dropped=False, log_factor=0.6931471805599453, rule='promo', group='Toys')
    """
    f, rule = factor(product, config)
    group = category_key(product.category, config.category_depth) if product.category else ""
    return Rule(dropped(product, config), math.log(f) if f != 1.0 else 0.0, rule, group)


def rerank(
    candidates: Sequence[Candidate],
    products: Mapping[str, Product],
    config: RerankConfig,
    k: int,
) -> list[Reranked]:
    """The top ``k`` candidates after business rules, best first, best scoring 1.0.

    An item missing from ``products`` has an unknown catalog record. Duplicate item ids
    keep their best raw score. Equal final scores fall back to the raw score, then the
    item id. The category cap (uncategorised items are exempt) is applied greedily in
    final order and never broken to fill ``k``, so fewer items may come back.

    >>> cands = [Candidate("a", 2.0, "trending"), Candidate("b", 1.0, "trending")]
    >>> out = rerank(cands, {"b": Product("b", promo=4.0)}, RerankConfig(), k=2)
    >>> [(r.item_id, round(r.score, 3), r.rule) for r in out]
    [('b', 1.0, 'promo'), ('a', 0.68, None)]
    """
    ids = [c.item_id for c in candidates]
    rules = {i: rule_of(products.get(i) or Product(i), config) for i in set(ids)}
    return rerank_lists(
        ids,
        [c.score for c in candidates],
        [c.reason for c in candidates],
        rules,
        config.max_per_category,
        k,
    )


def rerank_lists(
    item_ids: Sequence[str],
    scores: Sequence[float],
    reasons: Sequence[str],
    rules: Mapping[str, Rule],
    cap: int | None,
    k: int,
) -> list[Reranked]:
    """``rerank`` on parallel lists with the rules already looked up: the hot path.

    ``rules`` must hold every item id; ``cap`` is ``RerankConfig.max_per_category``.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    if k == 0:
        return []

    best: dict[str, int] = {}  # item -> index of its best candidate
    for index, (item, score) in enumerate(zip(item_ids, scores, strict=True)):
        # NaN fails every comparison; -inf is a model's mask.
        if not score > -math.inf:
            continue
        seen = best.get(item)
        if seen is None or score > scores[seen]:
            best[item] = index

    kept = [(i, rules[item]) for item, i in best.items() if not rules[item].dropped]
    if not kept:
        return []
    top = max(scores[i] for i, _ in kept)
    # (log final before normalisation, raw score, item id, candidate index, rule)
    rows = [
        (_log_preference(scores[i], top) + rule.log_factor, scores[i], item_ids[i], i, rule)
        for i, rule in kept
    ]
    rows.sort(key=_order)

    best_log = rows[0][0]
    counts: dict[str, int] = {}
    out: list[Reranked] = []
    for log_final, _, item, i, rule in rows:
        if cap is not None and rule.group:
            if counts.get(rule.group, 0) >= cap:
                continue
            counts[rule.group] = counts.get(rule.group, 0) + 1
        score = max(math.exp(log_final - best_log), SCORE_FLOOR)
        out.append(Reranked(item, score, reasons[i], rule.rule))
        if len(out) == k:
            break
    return out


def _order(row: tuple[float, float, str, int, Rule]) -> tuple[float, float, str]:
    return (-row[0], -row[1], row[2])
