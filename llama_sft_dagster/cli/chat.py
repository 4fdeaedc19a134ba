"""Talk to a trained model in the terminal: the champion by default, or a registered version, a merged model
folder or a LoRA adapter folder. The system prompt and the chat template are the ones it was trained with;
the reply streams token by token and stops at <|eot_id|>.

    make chat                                  # the registry's champion (after make demo)
    make chat MODEL=3                          # registered version 3 of llama-sft-merged
    make chat MODEL=.sft_state/artifacts/train_adapter/current/adapter   # an adapter (on its base model)
    python -m llama_sft_dagster.cli.chat --model champion --max-new-tokens 128

Type a message and Enter; an empty line or Ctrl-D ends the chat, `/reset` forgets the conversation.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from llama_sft_dagster.config.evaluation import ChampionConfig
from llama_sft_dagster.config.training import SYSTEM_PROMPT

EOT = "<|eot_id|>"


def resolve_model(spec: str, registered_model: str) -> tuple[Path, str]:
    """(folder, what it is) for "champion", a version number, or a folder (merged model or adapter)."""
    if spec == "champion" or spec.isdigit():
        from llama_sft_dagster.resources.model_registry import RegisteredModel
        from llama_sft_dagster.resources.tracking import MlflowTracking

        registry = RegisteredModel(MlflowTracking().resolved_uri(), registered_model)
        version = (
            registry.champion() if spec == "champion" else registry.client().get_model_version(registered_model, spec)
        )
        if version is None:
            raise SystemExit(f"no champion in {registered_model!r} yet: run `make demo` first, or name a folder")
        return Path(version.source), f"{registered_model} v{version.version}" + (
            " (champion)" if spec == "champion" else ""
        )
    folder = Path(spec)
    if not folder.is_dir():
        raise SystemExit(f"{spec}: not 'champion', a version number or a model/adapter folder")
    return folder, str(folder)


def load(folder: Path):
    """(model, tokenizer) of a merged model folder, or of an adapter folder on the base model it names."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (folder / "adapter_config.json").exists():
        from peft import PeftModel

        from llama_sft_dagster.core.training.merge import base_identity

        base = base_identity(folder)[0]
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(folder))
        return model.eval(), AutoTokenizer.from_pretrained(base)
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def system_prompt_of(folder: Path) -> str:
    """The system prompt the model was trained with (sft_dataset's format.json beside its lineage), or the
    project's default."""
    import json

    from llama_sft_dagster.assets.model_paths import FORMAT_FILE

    for parent in folder.resolve().parents:
        candidate = parent / "sft_dataset" / FORMAT_FILE
        if candidate.exists():
            return json.loads(candidate.read_text()).get("system_prompt", SYSTEM_PROMPT)
    return SYSTEM_PROMPT


def reply(model, tokenizer, messages: list[dict], max_new_tokens: int, out=sys.stdout) -> str:
    """Stream one assistant reply to `out`, greedy, stopping at <|eot_id|>; returns its text."""
    import torch
    from transformers import TextIteratorStreamer

    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    eot = tokenizer.convert_tokens_to_ids(EOT)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(**ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eot, pad_token_id=eot)
    with torch.no_grad():
        thread = threading.Thread(target=model.generate, kwargs={**kwargs, "streamer": streamer})
        thread.start()
        parts = []
        for piece in streamer:
            parts.append(piece)
            out.write(piece)
            out.flush()
        thread.join()
    out.write("\n")
    return "".join(parts).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chat in the terminal with the champion or a named model.")
    parser.add_argument("--model", default="champion", help="champion (default), a version number, or a folder")
    parser.add_argument("--registered-model", default=ChampionConfig().registered_model_name)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    folder, what = resolve_model(args.model, args.registered_model)
    print(f"loading {what} from {folder} ...", flush=True)
    model, tokenizer = load(folder)
    system = system_prompt_of(folder)
    messages = [{"role": "system", "content": system}]
    print(f"chatting with {what}; system prompt: {system[:80]!r}. Empty line or Ctrl-D to quit.", flush=True)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        if text == "/reset":
            messages = messages[:1]
            continue
        messages.append({"role": "user", "content": text})
        print("model> ", end="", flush=True)
        messages.append({"role": "assistant", "content": reply(model, tokenizer, messages, args.max_new_tokens)})
    print("bye")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
