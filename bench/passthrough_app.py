"""The ceiling for the ingest benchmark: a bare Faust agent that forwards raw bytes unchanged.

Same broker, same client library, same partitions as the real worker; no parsing, no state.
Run as ``python -m bench.passthrough_app BOOTSTRAP SOURCE SINK WEB_PORT APP_ID [send|send_soon|take]``.
"""

from __future__ import annotations

import sys

import faust
from faust.worker import Worker


def main() -> None:
    bootstrap, source, sink, port, app_id = sys.argv[1:6]
    # "send" awaits each send; "send_soon" buffers; "take" forwards batches of take_events(500, within=0.02 s)
    mode = sys.argv[6] if len(sys.argv) > 6 else "send"
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", autodiscover=False,
                    web_port=int(port), web_host="127.0.0.1", web_bind="127.0.0.1",
                    consumer_auto_offset_reset="earliest", producer_acks=-1)
    src = app.topic(source, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    out = app.topic(sink, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    forwarded = [0]

    @app.agent(src, name="passthrough")
    async def passthrough(stream):
        if mode == "take":
            async for events in stream.take_events(500, within=0.02):
                for event in events:
                    out.send_soon(key=event.key, value=event.value)
                forwarded[0] += len(events)
            return
        async for event in stream.events():
            if mode == "send_soon":
                out.send_soon(key=event.key, value=event.value)
            else:
                await out.send(key=event.key, value=event.value)
            forwarded[0] += 1

    @app.page("/metrics")
    async def count(web, request):
        return web.bytes(f"elderwatch_ingest_received_total {forwarded[0]}\n"
                         f"elderwatch_ingest_valid_total {forwarded[0]}\n".encode(), content_type="text/plain")

    Worker(app, loglevel="warn", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
