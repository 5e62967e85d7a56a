"""Service settings: environment variables, then an optional TOML file, then defaults.

Every field documents itself; `callcenter config` prints the effective values.
Environment variables win over the file. Names are upper-case field names with the
``CALLCENTER_`` prefix, except the two conventional ones, ``DATABASE_URL`` and
``VOSK_MODEL_PATH``, which are read without a prefix.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from callcenter.redact import MASK, mask_dsn, safe_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = PROJECT_ROOT.parent / "shared"


def default_cache_dir() -> Path:
    """Where the service keeps what it can rebuild (the sandbox, the model, trained
    ticket models): ``$XDG_CACHE_HOME/callcenter``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "callcenter"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLCENTER_", extra="forbid", validate_default=True
    )

    config_file: Path | None = Field(
        default=None, description="Optional TOML file with any of these settings."
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "CALLCENTER_DATABASE_URL", "database_url"),
        description="PostgreSQL DSN. Unset: an embedded PostgreSQL in data_dir/pg.",
        repr=False,  # may hold a password: never in a repr, a traceback or a log line
    )
    database_connect_attempts: int = Field(
        default=10, ge=1, le=100,
        description="At start: attempts to reach the database (0.5 s apart, doubling to "
                    "5 s) before giving up.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / "var",
        description="Where the embedded database, recordings and runtime files live.",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Downloads and unpacked models, the Asterisk sandbox root.",
    )
    recordings_dir: Path | None = Field(
        default=None,
        description="Recordings shared with Asterisk. Default: data_dir/recordings.",
    )
    vosk_model_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("VOSK_MODEL_PATH", "CALLCENTER_VOSK_MODEL_PATH",
                                      "vosk_model_path"),
        description="Unpacked Vosk model folder. Unset: resolved from ../shared/models.",
    )
    asr_skip_silence: bool = Field(
        default=False,
        description="Decode only the stretches Silero's voice activity model finds in a "
                    "leg (about half of a call; bench/asr_throughput.py: about 2x a plain "
                    "Vosk loop's audio per CPU-second against 1.6x with whole legs, "
                    "realspeech CER at most +0.3 points; the dev calls' CER, QA and "
                    "urgency as good, addresses 84 against 89 %: asr/decoder.py). Off by "
                    "default for those addresses; after a burst of 100 calls the first "
                    "one's result came 1.07x its time alone with it, 1.11x without "
                    "(bench/analysis_burst.py).")
    asr_search: Literal["narrow", "model"] = Field(
        default="narrow",
        description="How wide the recogniser searches: 'narrow' (beam 10, asr/search.py: "
                    "about 1.4x the audio per CPU-second at the same error rate) or 'model' "
                    "(the model's own conf/model.conf).")
    shared_dir: Path = Field(default=SHARED_DIR, description="The shared test-data folder.")

    agi_host: str = Field(default="127.0.0.1", description="FastAGI listen address.")
    agi_port: int = Field(default=4573, ge=1, le=65535, description="FastAGI listen port.")
    ari_url: str = Field(default="http://127.0.0.1:8088", description="Asterisk ARI base URL.")
    ari_user: str = Field(default="callcenter", description="ARI user (ari.conf).")
    ari_password: str = Field(default="callcenter", description="ARI password (ari.conf).",
                              repr=False)
    sip_host: str = Field(
        default="127.0.0.1",
        description="SIP server agent phones register to (printed with each new account).",
    )
    sip_port: int = Field(default=5060, ge=1, le=65535, description="SIP port for agent phones.")
    sip_realm: str = Field(
        default="callcenter",
        description="Digest realm of agent accounts; must equal default_realm in pjsip.conf.",
    )
    web_host: str = Field(default="127.0.0.1", description="Web UI/API listen address.")
    web_port: int = Field(default=8080, ge=1, le=65535, description="Web UI/API port.")
    softphone_ws_url: str = Field(
        default="wss://127.0.0.1:8089/ws",
        description="Where the console's browser softphone reaches Asterisk (SIP over secure "
                    "websocket, http.conf TLS); the agents' browsers must trust its certificate.",
    )
    web_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the web answers to (guards against DNS rebinding). Empty: "
                    "localhost, 127.0.0.1, ::1 and web_host.",
    )
    web_cookie_secure: bool = Field(
        default=True,
        description="Session cookie over HTTPS only (browsers accept it from http://localhost "
                    "too). Off only for a plain-HTTP test network.",
    )
    session_hours: float = Field(default=12.0, gt=0, le=24 * 7,
                                 description="A web session ends this long after sign-in.")
    session_idle_minutes: float = Field(default=60.0, gt=0,
                                        description="...or after this long without a request.")
    metrics_from_loopback: bool = Field(
        default=True,
        description="/metrics without sign-in from this machine; otherwise supervisors and "
                    "admins only.",
    )
    workers: int = Field(
        default=1, ge=0, le=64,
        description="Calls serve's own worker transcribes at once (0: none; run "
                    "`callcenter worker` processes instead, here or on other machines).")
    worker_heartbeat_s: float = Field(
        default=30.0, ge=2, le=600,
        description="A call whose worker has not shown signs of life for this long (killed, "
                    "its machine gone) is taken by another worker.")
    worker_concurrency: int = Field(
        default=0, ge=0, le=256,
        description="Calls one `callcenter worker` transcribes at once (0: one per core).")

    queues_file: Path | None = Field(
        default=None,
        description="Queues of the call distributor (YAML). Unset: callcenter/acd/queues.yaml.",
    )
    ring_timeout_s: float = Field(default=15.0, gt=0, description="Agent no-answer timeout.")
    wrap_up_s: float = Field(default=5.0, ge=0, description="Agent wrap-up after a call.")
    timezone: str = Field(default="Asia/Shanghai", description="Local time of the hotline.")
    ivr_menu_file: Path | None = Field(
        default=None,
        description="The IVR's menus, prompts and opening hours (YAML). Unset: "
                    "callcenter/ivr/menu.yaml.",
    )
    ivr_speech: bool = Field(
        default=True,
        description="Spoken menu choices and problem descriptions (Vosk grammars). Off: keys "
                    "only.",
    )
    asterisk_recordings_dir: str = Field(
        default="/var/spool/asterisk/recording",
        description="The recordings folder as Asterisk sees it (the same folder as "
                    "recordings_dir, which is how the service sees it).",
    )
    oncall_dial: str = Field(
        default="",
        description="Dial string of the on-call engineer (e.g. PJSIP/oncall or "
                    "PJSIP/13800000000@trunk): an emergency while the repair queue is closed. "
                    "Unset: the emergency goes to the repair queue as a P1.",
    )

    notifier_kind: Literal["log", "sms", "webhook"] = Field(
        default="log",
        description="How progress notices reach callers: log (a log line only), sms (an "
                    "SMS gateway, bearer token) or webhook (HMAC-signed POST).",
    )
    notifier_url: str = Field(default="", description="The SMS gateway's or webhook's URL.")
    notifier_secret: str = Field(
        default="", repr=False,
        description="The SMS gateway's bearer token, or the webhook's shared HMAC secret.",
    )
    notifier_timeout_s: float = Field(default=10.0, gt=0, le=120,
                                      description="Longest wait for the gateway's answer.")
    attachments_dir: Path | None = Field(
        default=None,
        description="Where ticket attachments (photos, PDFs) are stored. Default: "
                    "data_dir/attachments.",
    )
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024,
                                      description="Largest ticket attachment accepted.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_json: bool = Field(default=False, description="Log JSON lines instead of console text.")

    @field_validator("web_allowed_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # CALLCENTER_WEB_ALLOWED_HOSTS=a.example,b.example
            return [h.strip().lower() for h in value.split(",") if h.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")
        return value

    @model_validator(mode="after")
    def _notifier_complete(self) -> Settings:
        if self.notifier_kind != "log" and not (self.notifier_url and self.notifier_secret):
            raise ValueError(f"notifier_kind {self.notifier_kind} needs notifier_url and "
                             "notifier_secret")
        return self

    @property
    def recordings(self) -> Path:
        return self.recordings_dir or self.data_dir / "recordings"

    @property
    def attachments(self) -> Path:
        return self.attachments_dir or self.data_dir / "attachments"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("CALLCENTER_CONFIG_FILE")
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"CALLCENTER_CONFIG_FILE: no such file {config_file}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def describe(settings: Settings) -> list[dict[str, Any]]:
    """Every setting with its value and description, for `callcenter config`."""
    rows = []
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if name == "database_url":
            value = mask_dsn(str(value)) if value else value
        elif not info.repr:  # every secret (ari_password, notifier_secret...)
            value = MASK
        elif name in ("ari_url", "notifier_url"):
            value = safe_url(value)  # credentials belong in ari_user/ari_password
        rows.append({"name": name, "value": str(value), "description": info.description})
    return rows


def listening(settings: Settings, *, telephony: bool) -> str:
    """What the service listens on, for the console (serve, demo)."""
    db = "DATABASE_URL" if settings.database_url else f"embedded PostgreSQL, {settings.data_dir}/pg"
    lines = [f"web UI and API   http://{settings.web_host}:{settings.web_port}/",
             f"database         {db}",
             f"recordings       {settings.recordings}"]
    if telephony:
        lines += [f"FastAGI (IVR)    agi://{settings.agi_host}:{settings.agi_port}/ivr",
                  f"ARI (ACD)        {safe_url(settings.ari_url)} app 'hotline'",
                  f"SIP              {settings.sip_host}:{settings.sip_port} (agent phones)"]
    return "callcenter is listening:\n  " + "\n  ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
