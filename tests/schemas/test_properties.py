from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import Codec
from schemas.errors import SchemaError

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
CODECS = st.sampled_from([Codec("avro"), Codec("confluent")])

purchases = st.fixed_dictionaries(
    {
        "event_id": st.text(),
        "user_id": st.text(),
        "item_id": st.text(),
        "quantity": INT32,
        "price": st.none() | st.floats(allow_nan=False),
        "currency": st.none() | st.text(max_size=3),
        "ts": INT64,
        "session_id": st.none() | st.text(),
    }
)


@given(record=purchases, codec=CODECS)
def test_purchase_round_trips(record: dict[str, Any], codec: Codec) -> None:
    assert codec.decode("Purchase", codec.encode("Purchase", record)) == record


@given(data=st.binary(max_size=128), codec=CODECS)
def test_decode_fails_only_with_schema_error(data: bytes, codec: Codec) -> None:
    try:
        decoded = codec.decode("Purchase", data)
    except SchemaError:
        return
    assert set(decoded) >= {"event_id", "user_id", "item_id", "quantity", "ts"}
