"""The stream hub guards its shared read against a cursor Redis would refuse."""

from __future__ import annotations

import pytest

from api.streaming.hub import StreamHub


@pytest.mark.parametrize("cursor", ["0-99999999999999999999999", "abc", "", "$", "1-2-3"])
def test_subscribe_refuses_a_cursor_that_is_not_a_stream_id(cursor):
    hub = StreamHub()
    with pytest.raises(ValueError, match="not a stream id"):
        hub.subscribe("gen:x", cursor)
    # Nothing was registered for the shared read.
    assert hub._subs == {} and hub._task is None
