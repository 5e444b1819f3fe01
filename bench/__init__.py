"""Benchmarks of the gateway against a floor and the original pattern (`python -m bench`).

Servers and the load generator run as separate processes on 127.0.0.1:

- `floor`: the least any server can do with the same simulated LangChain model.
- `original`: the pattern the gateway replaced, a threadpool route over `model.stream`.
- `gateway`: `gemini-sse serve` itself.
- `loadgen`: N concurrent streams over raw asyncio connections, one JSON result out.
- `run`: starts each server, drives the load generator, reads the servers' CPU and memory.
- `report`: medians over repetitions, ratios to the floor, markdown tables.
- `retention`: the memory a gateway keeps once a burst of large answers is over.
"""
