"""The ceiling for the ingest benchmark: a bare Faust agent that forwards raw bytes unchanged.

Same broker, same client library, same partitions as the real worker; no parsing, no state.
Run as ``python -m bench.passthrough_app BOOTSTRAP SOURCE SINK WEB_PORT APP_ID [send|send_soon|take|aiokafka|worker-code]``.

``aiokafka`` is not Faust at all: aiokafka's own consumer (in a group, batches of ``getmany``) and producer
(the worker's linger and batch size), to show what Faust's per-message path costs beside the client library.

``worker-code`` is that loop running the worker's own code on each batch (``bench/worker_code.py``: ingest and
detect, one after the other, on the batch's messages), sending what the worker sends (validated readings,
warnings) to SINK, and the state records at each checkpoint (the worker's commit interval), then committing,
as the readings loop does. A sketch of a runtime without Faust's per-message path, to measure what one could reach: no state
recovery, no rebalancing, everything in one topic.
"""

from __future__ import annotations

import asyncio
import sys

import faust
from faust.worker import Worker

from elderwatch.settings import Settings


def main() -> None:
    bootstrap, source, sink, port, app_id = sys.argv[1:6]
    # "send" awaits each send; "send_soon" buffers; "take" forwards batches of take_events(500, within=0.02 s)
    mode = sys.argv[6] if len(sys.argv) > 6 else "send"
    settings = Settings()  # the worker's producer settings: the ceiling is measured as the worker sends
    if mode in ("aiokafka", "worker-code"):
        return asyncio.run(forward_with_aiokafka(bootstrap, source, sink, int(port), app_id, settings,
                                                 worker_code=mode == "worker-code"))
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", autodiscover=False,
                    web_port=int(port), web_host="127.0.0.1", web_bind="127.0.0.1",
                    consumer_auto_offset_reset="earliest", producer_acks=-1,
                    producer_linger_ms=settings.producer_linger_ms,
                    producer_max_batch_size=settings.producer_max_batch_size,
                    producer_compression_type=compression(settings))
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

    worker = Worker(app, loglevel="warn", quiet=True)
    worker.spinner = None  # as the worker does (elderwatch/worker.py): the spinner sets the root logger to DEBUG
    worker.execute_from_commandline()


def compression(settings: Settings) -> str | None:
    return None if settings.producer_compression == "none" else settings.producer_compression


async def forward_with_aiokafka(bootstrap: str, source: str, sink: str, port: int, group: str,
                                settings: Settings, *, worker_code: bool = False) -> None:
    from aiohttp import web
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from bench.worker_code import WorkerCode
    from elderwatch.worker import tune_gc

    forwarded = [0]
    code = WorkerCode() if worker_code else None
    if worker_code:
        tune_gc()

    async def count(request: web.Request) -> web.Response:
        if code is not None:  # the worker's own counters: the bench waits for received = settled
            counts = code.counts()
            return web.Response(text="".join(f"elderwatch_{stage}_{name}_total {n}\n" for stage, terms in counts.items()
                                             for name, n in terms.items()))
        return web.Response(text=f"elderwatch_ingest_received_total {forwarded[0]}\n"
                                 f"elderwatch_ingest_valid_total {forwarded[0]}\n")

    web_app = web.Application()
    web_app.router.add_get("/metrics", count)
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=settings.producer_linger_ms,
                                max_batch_size=settings.producer_max_batch_size,
                                compression_type=compression(settings))
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=code is None)
    await consumer.start()
    await producer.start()
    committed = asyncio.get_running_loop().time()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            for records in batches.values():
                if code is None:
                    for record in records:
                        await producer.send(sink, key=record.key, value=record.value)  # buffered, not awaited
                    forwarded[0] += len(records)
                    continue
                sends = code.run([(record.offset, record.key, record.value) for record in records])
                await asyncio.gather(*[await producer.send(sink, key=key, value=value) for key, value in sends])
            if code is not None and (asyncio.get_running_loop().time() - committed >= settings.commit_interval_s
                                     or code.pending() >= settings.max_pending_states):
                # the states, after what their readings raised is acknowledged; then the offsets, as the loop does
                await asyncio.gather(*[await producer.send(sink, key=key, value=value)
                                       for key, value in code.checkpoint()])
                await consumer.commit()
                committed = asyncio.get_running_loop().time()
    finally:
        await consumer.stop()
        await producer.stop()
        await runner.cleanup()


if __name__ == "__main__":
    main()
