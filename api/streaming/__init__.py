"""The API's streaming pipeline: starting a generation, reading its Redis Stream
and framing its events for each client.

- `start.py`: admit, store, open the stream and queue the task; await or cancel.
- `enqueue.py`: Celery task messages built and pushed from the event loop.
- `hub.py`: the one XREAD of the process, shared by every relayed stream.
- `relay.py`: one generation's stream as events, ending a dead worker's itself.
- `sse.py`, `websocket.py`, `openai_chunks.py`: those events as each client reads them.
"""
