"""Agent loop: offer the model tools, run the calls it makes with local functions, send the
results back, print the answer. The same code on a local model (a chat template with tool
support) or an OpenAI-compatible server.

    SIPP_MODEL=path/to/model.gguf python3 examples/agent_loop.py
    SIPP_REMOTE_URL=http://127.0.0.1:8080/v1 python3 examples/agent_loop.py
"""
import os

import sipp


def get_weather(unit: str) -> str:
    return "21 C" if unit == "celsius" else "70 F"


def get_time(zone: str) -> str:
    return "12:00"


FUNCTIONS = {"get_weather": get_weather, "get_time": get_time}
TOOLS = [
    sipp.Tool("get_weather", "The weather now, in a unit",
              {"type": "object", "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}},
               "required": ["unit"]}),
    sipp.Tool("get_time", "The time now in a zone",
              {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}),
]

with sipp.Client() as client:
    if os.environ.get("SIPP_REMOTE_URL"):
        ep = client.add_provider("agent", kind="openai_compatible", model="any",
                                 base_url=os.environ["SIPP_REMOTE_URL"])
    else:
        ep = client.add_local("agent", os.environ.get("SIPP_MODEL", "model.gguf"))
    messages = [{"role": "user", "content": "What are the weather and the time?"}]
    for turn in range(4):  # a bound on the turns: a model may keep calling
        with ep.chat(messages, tools=TOOLS, max_tokens=256) as run:
            for d in run.deltas():  # text as it comes; the calls are in the result
                if d.kind == "content":
                    print(d.text, end="", flush=True)
            r = run.result()
        if r.finish_reason != "tool_calls":
            print(f"\n[answer after {turn} tool round(s)]")
            break
        messages.append(r.message())  # the assistant turn with its calls
        for call in r.tool_calls:
            result = FUNCTIONS[call.name](**call.args)
            print(f"\n[{call.name}({call.arguments}) -> {result}]")
            messages.append(sipp.tool_result(call, result))
