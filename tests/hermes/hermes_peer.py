"""The Rhasspy side of Hark's Hermes tests, played by the real rhasspy-hermes.

Reads one JSON command per line on stdin and writes one JSON answer per line
on stdout. It BUILDS the messages Rhasspy sends (NluIntent,
NluIntentNotRecognized, AudioPlayFinished) with the library's own classes and
`to_json()`, and READS the hub's answers (DialogueEndSession,
DialogueContinueSession, TtsSay,
AudioPlayBytes) with `Class.from_dict(json.loads(...))`, so a field the hub
names wrongly or leaves out fails here the way it would fail in Rhasspy.
(`from_json` is avoided: with the dataclasses-json some installs pin, it
breaks on Python 3.9 and later.)

Run by tests/src/hermes.rs through target/hermes-venv/bin/python
(scripts/hermes-venv.sh makes it).
"""

import io
import json
import sys
import traceback
import wave

from rhasspyhermes.audioserver import AudioPlayBytes, AudioPlayFinished
from rhasspyhermes.dialogue import DialogueContinueSession, DialogueEndSession
from rhasspyhermes.intent import Intent, Slot
from rhasspyhermes.nlu import NluIntent, NluIntentNotRecognized
from rhasspyhermes.tts import TtsSay


def nlu_intent(c):
    slots = [
        Slot(
            entity=s["entity"],
            value=s["value"],
            slot_name=s.get("slotName", s["entity"]),
            raw_value=s.get("rawValue", str(s["value"].get("value"))),
        )
        for s in c.get("slots", [])
    ]
    message = NluIntent(
        input=c.get("input", ""),
        intent=Intent(intent_name=c["intent"], confidence_score=c.get("confidence", 1.0)),
        slots=slots,
        site_id=c.get("siteId", "default"),
        session_id=c.get("sessionId"),
        custom_data=c.get("customData"),
    )
    return {"topic": NluIntent.topic(intent_name=c["intent"]), "payload": message.to_json()}


def not_recognized(c):
    message = NluIntentNotRecognized(
        input=c.get("input", ""),
        site_id=c.get("siteId", "default"),
        session_id=c.get("sessionId"),
        custom_data=c.get("customData"),
    )
    return {"topic": NluIntentNotRecognized.topic(), "payload": message.to_json()}


def play_finished(c):
    message = AudioPlayFinished(id=c["id"], session_id=c.get("sessionId"))
    return {"topic": AudioPlayFinished.topic(site_id=c["siteId"]), "payload": message.to_json()}


def read_end_session(c):
    m = DialogueEndSession.from_dict(json.loads(c["payload"]))
    return {"sessionId": m.session_id, "text": m.text, "customData": m.custom_data}


def read_continue_session(c):
    m = DialogueContinueSession.from_dict(json.loads(c["payload"]))
    return {
        "sessionId": m.session_id,
        "text": m.text,
        "intentFilter": m.intent_filter,
        "customData": m.custom_data,
        "sendIntentNotRecognized": m.send_intent_not_recognized,
    }


def read_tts_say(c):
    m = TtsSay.from_dict(json.loads(c["payload"]))
    return {
        "text": m.text,
        "siteId": m.site_id,
        "id": m.id,
        "sessionId": m.session_id,
        "lang": m.lang,
        "volume": m.volume,
    }


def read_play_bytes(c):
    topic = c["topic"]
    if not AudioPlayBytes.is_topic(topic):
        raise ValueError(f"{topic} is not a playBytes topic")
    wav_bytes = bytes.fromhex(c["hex"])
    message = AudioPlayBytes(wav_bytes=wav_bytes)
    with wave.open(io.BytesIO(message.payload()), "rb") as w:
        return {
            "siteId": AudioPlayBytes.get_site_id(topic),
            "requestId": AudioPlayBytes.get_request_id(topic),
            "channels": w.getnchannels(),
            "sampleWidth": w.getsampwidth(),
            "frameRate": w.getframerate(),
            "frames": w.getnframes(),
        }


OPS = {
    "nlu_intent": nlu_intent,
    "not_recognized": not_recognized,
    "play_finished": play_finished,
    "read_end_session": read_end_session,
    "read_continue_session": read_continue_session,
    "read_tts_say": read_tts_say,
    "read_play_bytes": read_play_bytes,
}


def main():
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            answer = OPS[command["op"]](command)
        except Exception as e:  # every failure goes back to the test, which fails loudly
            answer = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
