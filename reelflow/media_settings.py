"""The settings of what reelflow makes (the video: its sources, writer, encoder, uploads),
apart from the service's so each stays a readable list. `Settings` inherits them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MediaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    x264_preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"
    ] = Field("superfast", description="libx264 speed/size trade-off for scene segments")
    x264_threads: int = Field(1, ge=0, le=64, description="encoder threads per scene (0: auto)")
    trends_source: str = Field(
        "builtin", description="builtin, a path to a JSON/CSV file, or an http(s) CSV URL"
    )
    script_provider: Literal["offline", "openai"] = Field(
        "offline",
        description="Who writes scripts: offline (bundled knowledge, no network) or openai (an"
        " OpenAI-compatible endpoint, the offline writer as its fallback)",
    )
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://llm:8080/v1"
    )
    openai_api_key: SecretStr | None = Field(None, description="Key of that endpoint")
    openai_model: str = Field("gpt-4o-mini", description="Model the script writer asks for")
    openai_timeout_seconds: float = Field(
        20, gt=0, le=300, description="How long one script request may take"
    )
    asset_max_bytes: int = Field(
        20_000_000, ge=1024, description="Largest upload to POST /assets (bytes); beyond it 413"
    )
