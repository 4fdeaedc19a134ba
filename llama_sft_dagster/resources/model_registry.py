"""The MLflow model registry of the merged models, on the tracking resource's store (the embedded SQLite
database by default): every evaluated merged model is a version of one registered model, and the alias
`champion` names the one to serve. Only champion_model moves the alias (see core/evaluation/promotion.py).

Roll back by pointing the alias at an earlier version, whose files retention keeps (ArtifactStore):

    python -m llama_sft_dagster.resources.model_registry                # list versions, mark the champion
    python -m llama_sft_dagster.resources.model_registry --champion 3   # make version 3 the champion
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

CHAMPION = "champion"
CARD_ARTIFACT_DIR = "model_card"  # the model card's folder among the run's artifacts


@dataclass(frozen=True)
class RegisteredModel:
    uri: str
    name: str

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def champion(self):
        """The ModelVersion holding the `champion` alias, or None (no registered model or no alias yet)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(self.name, CHAMPION)
        except MlflowException:
            return None

    def register(self, source: str, tags: Mapping[str, str], run_id: str | None = None):
        """A new version whose source is the merged model's folder."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            client.get_registered_model(self.name)
        except MlflowException:
            client.create_registered_model(self.name, description="Merged LoRA fine-tunes (llama-sft-dagster).")
        return client.create_model_version(
            self.name, source=source, run_id=run_id or None, tags={k: str(v) for k, v in tags.items()}
        )

    def attach_card(self, version, card_path) -> None:
        """The model card's Markdown body as the version's description (the registry page renders it; the YAML
        front matter is for the hub) and the whole card as `model_card/README.md` among the artifacts of the run
        the version points at (its run page lists it)."""
        from pathlib import Path

        from llama_sft_dagster.core.report.model_card import split_front_matter

        client = self.client()
        _, body = split_front_matter(Path(card_path).read_text())
        client.update_model_version(self.name, str(version.version), description=body.strip())
        if version.run_id:
            client.log_artifact(version.run_id, str(card_path), artifact_path=CARD_ARTIFACT_DIR)

    def version_url(self, version: str | int, ui_url: str) -> str:
        """The version's page in the MLflow UI (its registry entry, with the run it hangs on)."""
        from urllib.parse import quote

        return f"{ui_url.rstrip('/')}/#/models/{quote(self.name)}/versions/{version}"

    def promote(self, version: str | int) -> None:
        self.client().set_registered_model_alias(self.name, CHAMPION, str(version))

    def versions(self) -> list:
        return sorted(self.client().search_model_versions(f"name = '{self.name}'"), key=lambda v: int(v.version))


def main(argv: list[str] | None = None) -> None:
    from llama_sft_dagster.config.evaluation import ChampionConfig
    from llama_sft_dagster.resources.tracking import MlflowTracking

    parser = argparse.ArgumentParser(description="List the registered merged models or move the champion alias.")
    parser.add_argument("--champion", help="version number to make the champion (a rollback)")
    parser.add_argument("--name", default=ChampionConfig().registered_model_name)
    args = parser.parse_args(argv)
    registry = RegisteredModel(MlflowTracking().resolved_uri(), args.name)
    if args.champion:
        registry.promote(args.champion)
    for v in registry.versions():
        mark = " <- champion" if CHAMPION in (v.aliases or []) else ""
        print(f"v{v.version}  evaluation_loss={v.tags.get('evaluation_loss_tuned', '?')}  {v.source}{mark}")


if __name__ == "__main__":
    main()
