"""A TCP proxy on 127.0.0.1 that adds a fixed latency to every HTTP request, for
scripts/bench/bucket.sh: `latency_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS`.

HTTP/1.1 clients send one request at a time on a connection and wait for its response, so a
request starts where bytes from the client follow bytes from the server (or open the
connection). Those bytes are held DELAY_MS before they are passed on; the rest of a request
body and every response byte pass at once. Each request so waits DELAY_MS once, as if the
server were that far away (without a slower transfer rate: this models the round trip only).
It prints "listening PORT" when ready and runs until it is killed.
"""

import asyncio
import sys

CHUNK = 1 << 20


async def pump(reader, writer, on_data):
    try:
        while data := await reader.read(CHUNK):
            await on_data(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(client_r, client_w, upstream_port, delay):
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError:
        client_w.close()
        return
    # True when the next client bytes start a new request.
    state = {"new_request": True}

    async def from_client(_data):
        if state["new_request"]:
            state["new_request"] = False
            if delay > 0:
                await asyncio.sleep(delay)

    async def from_server(_data):
        state["new_request"] = True

    await asyncio.gather(
        pump(client_r, server_w, from_client), pump(server_r, client_w, from_server)
    )


async def main():
    listen_port, upstream_port, delay_ms = (int(a) for a in sys.argv[1:4])
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream_port, delay_ms / 1000), "127.0.0.1", listen_port
    )
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
