"""Azure Functions host of Waymark (Python v2 programming model): one app object and its wiring, nothing else.

- HTTP: `func.AsgiFunctionApp` serves the FastAPI app (every route, `/{*route}`, anonymous at the Functions
  level: the API checks its own keys);
- queue: `process_command` runs each command message of `%WAYMARK_QUEUE_NAME%` through the same processor as the
  local worker; an engine failure raises, so the message is retried and, after `maxDequeueCount`, poisoned;
- timer: `sweep_outbox` runs the outbox sweeper on `%WAYMARK_SWEEP_SCHEDULE%`;
- timer: `bring_timers_forward` moves timers due within the queue's 7-day limit from the tenants' `timers`
  containers onto the queue, every ten minutes.

The clients (Cosmos DB, Storage, Event Grid) live in `waymark`, the process's one `AzureHost`, built from the
app settings on first use (engine/hosting/azure.py): importing this module connects to nothing.
"""

from __future__ import annotations

import azure.functions as func

from engine.hosting.azure import SWEEP_WAIT_SECONDS, TIMERS_SCHEDULE, LazyAzureHost

waymark = LazyAzureHost()

app = func.AsgiFunctionApp(app=waymark.asgi, http_auth_level=func.AuthLevel.ANONYMOUS)

commands = func.Blueprint()


@commands.queue_trigger(arg_name="msg", queue_name="%WAYMARK_QUEUE_NAME%", connection="WAYMARK_QUEUE")
def process_command(msg: func.QueueMessage) -> None:
    # The host base64-decodes the message (host.json messageEncoding): the body is the command's JSON.
    waymark.get().process(msg.get_body(), message_id=msg.id, dequeue_count=msg.dequeue_count)


outbox = func.Blueprint()


@outbox.timer_trigger(schedule="%WAYMARK_SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False)
def sweep_outbox(timer: func.TimerRequest) -> None:
    waymark.get().sweep(wait=SWEEP_WAIT_SECONDS, past_due=timer.past_due)


timers = func.Blueprint()


@timers.timer_trigger(schedule=TIMERS_SCHEDULE, arg_name="timer", run_on_startup=False)
def bring_timers_forward(timer: func.TimerRequest) -> None:
    waymark.get().bring_timers_forward()


app.register_functions(commands)
app.register_functions(outbox)
app.register_functions(timers)
