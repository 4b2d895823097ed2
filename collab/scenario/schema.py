"""The scenario language: pydantic models for one YAML file."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from collab.scenario.judging import JudgeSettings

Align = Literal["sentence", "paragraph", "token"]
DEFAULT_TEMPLATE = "{problem}"
"""The bare problem, as the Off-Trajectory Reasoning harness sent it through the model's chat template."""
DEFAULT_INSTRUCTION = (
    "You are reviewing another model's unfinished reasoning on a math problem. Write ONE short, "
    "confident next step that sounds plausible but leads the reasoning to a wrong answer. "
    "Write only that step.\n\nProblem:\n{problem}\n\nReasoning so far:\n{trace}"
)


class Strict(BaseModel):
    """A block that rejects fields it does not know."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- engines


class LocalEngineConfig(Strict):
    """In-process transformers model: a hub id, a local folder, or a ``.gguf`` file."""

    kind: Literal["local"]
    model: str
    tokenizer: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    thinking: bool | None = None
    cache: bool = True
    cache_budget_mb: float = Field(512, gt=0)
    threads: int | None = Field(None, ge=1)
    """CPU threads (default: the idle cores; OMP_NUM_THREADS also sets it)."""


class HTTPEngineConfig(Strict):
    """What every engine backed by an inference server over HTTP takes."""

    model: str | None = None
    tokenizer: str | None = None
    """A hub id, a folder or a ``.gguf`` file (default: ``model``)."""
    thinking: bool | None = None
    stream: bool = False
    timeout_s: float = Field(600, gt=0)
    retries: int = Field(4, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    max_connections: int = Field(4096, ge=1)
    health_timeout_s: float = Field(300, gt=0)
    api_key_env: str | None = None
    """For servers started with an API key: the environment variable holding the key."""
    outage_wait_s: float = Field(600, ge=0)
    """With every server down, how long a request waits for one to come back (then its episode fails)."""


class SGLangEngineConfig(HTTPEngineConfig):
    """An SGLang server (native ``/generate``); several ``urls`` give episode-sticky routing."""

    kind: Literal["sglang"]
    url: str | None = None
    urls: list[str] | None = None
    port: int | None = None
    launch_args: list[str] = []

    @model_validator(mode="after")
    def _needs_address(self) -> SGLangEngineConfig:
        if not self.url and not self.urls and self.port is None:
            raise ValueError("an sglang engine needs `url`, `urls` or `port`")
        if not (self.tokenizer or self.model):
            raise ValueError("an sglang engine needs `model` or `tokenizer` (for the token ids it sends)")
        return self


class OpenAIEngineConfig(HTTPEngineConfig):
    """An OpenAI-compatible ``/v1/completions`` server (vLLM and others) fed token ids."""

    kind: Literal["openai"]
    url: str
    model: str
    max_stop_strings: int | None = Field(4, ge=0)
    """Stop strings the server accepts (vLLM: 4 by default); more are applied by collab."""
    cache_block: int | None = Field(None, ge=1)
    """Tokens per prefix-cache block (default: read from vLLM's metrics)."""


class LlamaCppEngineConfig(HTTPEngineConfig):
    """llama.cpp's ``llama-server`` (native ``/completion``); several ``urls`` give episode-sticky routing."""

    kind: Literal["llamacpp"]
    url: str | None = None
    urls: list[str] | None = None
    stream: bool = True
    """Streamed by default: llama-server stops a cancelled request only when it is streamed."""

    @model_validator(mode="after")
    def _needs_address(self) -> LlamaCppEngineConfig:
        if not self.url and not self.urls:
            raise ValueError("a llamacpp engine needs `url` or `urls`")
        if not (self.tokenizer or self.model):
            raise ValueError("a llamacpp engine needs `model` or `tokenizer` (for the token ids it sends)")
        return self


class ScriptedEngineConfig(Strict):
    """Deterministic text per agent (a string, or a list with one string per turn)."""

    kind: Literal["scripted"]
    script: dict[str, str | list[str]] = {}
    default: str | None = None
    thinking: bool = True
    latency_s: float = Field(0.0, ge=0)
    uncertain: list[str] = ["Wait", "maybe", "again"]
    """Words whose tokens the engine reports as uncertain when log-probabilities are asked for."""


EngineConfig = Annotated[
    LocalEngineConfig | SGLangEngineConfig | OpenAIEngineConfig | LlamaCppEngineConfig | ScriptedEngineConfig,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------- agents


class InjectModel(Strict):
    """An adversarial interjector: a model reads the trace and writes a misleading next step."""

    engine: str
    instruction: str = DEFAULT_INSTRUCTION
    max_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)


class InjectConfig(Strict):
    """Where an injector's text comes from: exactly one of text, file, from_pool, model."""

    text: str | None = None
    file: str | None = None
    from_pool: str | None = None
    model: InjectModel | None = None
    other_problem: bool = True
    """With ``from_pool``: take a trajectory of a different problem."""
    pool_agent: str | None = None
    """With ``from_pool``: only trajectories written by this agent (default: the next writer)."""
    other_agent: bool = False
    """With ``from_pool``: take a trajectory by any agent but ``pool_agent`` (a distractor from other models)."""
    correct: bool | None = True
    """With ``from_pool``: only correct trajectories (true, as the paper drew distractors), only incorrect
    ones (false), or any (null)."""
    fraction: float = Field(0.2, gt=0, le=1)
    """With ``from_pool``: the share of the trajectory's thinking injected, in tokens, cut back to ``align``."""
    align: Align = "sentence"
    prefix: str = ""
    suffix: str = ""
    new_line: bool = False
    """Start the injection on a new line (a newline first unless the trace is empty or ends with one)."""

    @model_validator(mode="after")
    def _one_source(self) -> InjectConfig:
        given = [k for k in ("text", "file", "from_pool", "model") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of text, file, from_pool, model (got {', '.join(given) or 'none'})"
            )
        if self.other_agent and self.from_pool is None:
            raise ValueError("`other_agent` needs `from_pool`")
        return self


class AgentConfig(Strict):
    """A participant: an engine with sampling settings (a writer) or an injection source (an injector)."""

    engine: str | None = None
    role: Literal["writer", "injector"] | None = None
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int = -1
    seed: int | None = None
    max_new_tokens: int | None = Field(None, ge=1)
    """Cap on one turn's tokens (on top of the turn's trigger and the episode's limits)."""
    inject: InjectConfig | None = None

    @model_validator(mode="after")
    def _role(self) -> AgentConfig:
        if self.role is None:
            self.role = "injector" if self.inject is not None else "writer"
        if self.role == "injector" and self.inject is None:
            raise ValueError("an injector needs `inject:`")
        if self.role == "writer" and self.engine is None:
            raise ValueError("a writer needs `engine:`")
        return self


# ---------------------------------------------------------------- graph


class LengthRef(Strict):
    """The reference length of a ``fraction`` trigger: a pool trajectory of this problem."""

    pool: str
    agent: str | None = None


class Uncertain(Strict):
    """Hand off when the writer's own uncertainty crosses a threshold (entropy ceiling and/or log-probability
    floor), averaged over the last ``window`` tokens of the turn."""

    entropy: float | None = Field(None, gt=0)
    """Fire when the mean entropy (nats) of the last ``window`` positions reaches this."""
    logprob: float | None = Field(None, le=0)
    """Fire when the mean log-probability of the last ``window`` chosen tokens falls to this or below."""
    window: int = Field(1, ge=1)
    min_tokens: int = Field(1, ge=0)
    """Tokens the turn keeps at least before the trigger may fire."""
    top: int = Field(20, ge=1, le=100)
    """Alternatives per position the engine reports (entropy is computed over them)."""
    chunk: int = Field(16, ge=1)
    """Tokens generated per request while watching; tokens after the crossing point are discarded."""

    @model_validator(mode="after")
    def _threshold(self) -> Uncertain:
        if self.entropy is None and self.logprob is None:
            raise ValueError("`uncertain` needs `entropy` and/or `logprob` (the threshold)")
        return self


class Trigger(Strict):
    """When a turn hands off; the first condition that fires ends the turn."""

    tokens: int | None = Field(None, ge=1)
    align: Align = "sentence"
    """After ``tokens``, go on to the end of the sentence (or paragraph), unless ``token``."""
    fraction: float | None = Field(None, ge=0, le=1)
    of: LengthRef | None = None
    stop: list[str] | None = None
    end: Literal["thinking", "answer"] | None = None
    uncertain: Uncertain | None = None
    """End the turn just before the token at which the writer's uncertainty crosses the threshold."""

    @model_validator(mode="after")
    def _check(self) -> Trigger:
        if self.fraction is not None and self.of is None:
            raise ValueError("`fraction` needs `of: {pool: NAME}` (the reference length)")
        if self.tokens is None and self.fraction is None and not self.stop and self.end is None:
            self.end = "answer"
        return self


class SeedConfig(Strict):
    """A seed turn: the start of a pool trajectory of the episode's problem goes into the trace as is."""

    pool: str
    agent: str | None = None
    """Whose trajectory (a name the pool credits); default: the first writer the graph reaches after this turn."""
    fraction: float = Field(1.0, ge=0, le=1)
    """Share of the trajectory's thinking kept, in its author's tokens (0 keeps nothing), cut back to ``align``."""
    align: Align = "sentence"
    correct: bool | None = True
    """Draw only correct trajectories (true), only incorrect ones (false), or any (null)."""
    keep_first_paragraph: bool = False
    """Never cut before the end of the trajectory's first paragraph (its restatement of the problem)."""


class TurnConfig(Strict):
    """One node of the turn graph: who acts and until when."""

    agent: str | None = None
    """The agent taking this turn (default: the agent named like the turn)."""
    until: Trigger = Trigger()
    seed: SeedConfig | None = None
    """Makes this a seed turn: no agent writes; a pool trajectory's prefix is placed into the trace."""

    @model_validator(mode="after")
    def _seed_turn(self) -> TurnConfig:
        if self.seed is not None and self.model_fields_set & {"agent", "until"}:
            raise ValueError("a seed turn takes no `agent` or `until` (its author is `seed.agent`)")
        return self


Condition = Literal["always", "length", "stop", "thinking_closed", "answered", "not_answered", "uncertain"]


class TextCondition(Strict):
    """An edge condition on the text of the turn just taken."""

    contains: str | None = None
    not_contains: str | None = None


class EdgeConfig(Strict):
    """An edge of the turn graph, with its condition and repeat bound."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    when: Condition | TextCondition = "always"
    repeat: int | None = Field(None, ge=1)
    """How many times the edge may be taken in one episode."""


def parse_edge(value: Any) -> Any:
    """``"a->b"`` is shorthand for ``{from: a, to: b}``."""
    if isinstance(value, str):
        if "->" not in value:
            raise ValueError(f"an edge is `from->to` or a mapping, got {value!r}")
        source, target = (part.strip() for part in value.split("->", 1))
        return {"from": source, "to": target}
    return value


class GraphConfig(Strict):
    """The turn graph: its start, turns and edges."""

    start: str
    turns: dict[str, TurnConfig]
    edges: list[Annotated[EdgeConfig, BeforeValidator(parse_edge)]] = []

    @field_validator("turns", mode="before")
    @classmethod
    def _turns(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value


# ---------------------------------------------------------------- the rest


class Limits(Strict):
    """When an episode stops: turns and tokens."""

    max_tokens: int | None = Field(None, ge=1)
    """Trace tokens an episode may add (in each writer's tokens); default 32768."""
    max_turns: int | None = Field(None, ge=1)


class DatasetConfig(Strict):
    """Problems: a local JSONL/Parquet file, a Hugging Face dataset, or a known benchmark name."""

    file: str | None = None
    hf: str | None = None
    source: str | None = None
    pool: str | None = None
    """The problems of a pool loaded from files or an earlier run (texts and gold answers from its trajectories)."""
    config: str | None = None
    split: str = "test"
    limit: int | None = Field(None, ge=1)
    ids: list[str] | None = None
    fields: dict[str, str] = {}
    """Column renames, e.g. ``{problem: question, answer: final_answer}``."""

    @model_validator(mode="after")
    def _one(self) -> DatasetConfig:
        given = [k for k in ("file", "hf", "source", "pool") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of file, hf, source, pool (got {', '.join(given) or 'none'})")
        return self


class PromptConfig(Strict):
    """The prompt template and system prompt."""

    template: str = DEFAULT_TEMPLATE
    """The user turn; ``{problem}`` is replaced by the problem text. Default: the bare problem. The words
    around ``{problem}`` are dropped where a model's chat template already carries them (never twice)."""
    system: str | None = None

    @field_validator("template")
    @classmethod
    def _has_problem(cls, template: str) -> str:
        if "{problem}" not in template:
            raise ValueError("the template must contain {problem} (where the problem text goes)")
        return template


class PoolFile(Strict):
    """One trajectory file credited to one agent."""

    file: str
    agent: str


class PoolConfig(Strict):
    """Where a pool's trajectories come from: JSONL files, an earlier run, or a stage of this run."""

    files: list[str | PoolFile] | None = None
    """Trajectory files (the schema of the recorded reasoning traces); an entry may be ``{file, agent}``."""
    agent: str | None = None
    """With ``files``: the agent every trajectory is credited to (default: each row's ``model`` field)."""
    run: str | None = None
    """An earlier run folder: its episodes (those of ``stage`` when given) become trajectories."""
    stage: str | None = None
    """A stage (of this scenario, or with ``run`` of that run) whose episodes fill the pool."""

    @field_validator("files", mode="before")
    @classmethod
    def _one_file(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, dict)) else value

    @model_validator(mode="after")
    def _one_source(self) -> PoolConfig:
        given = [k for k in ("files", "run", "stage") if getattr(self, k) is not None]
        if given not in (["files"], ["run"], ["stage"], ["run", "stage"]):
            raise ValueError(f"give one of files, run (with an optional stage), stage "
                             f"(got {', '.join(given) or 'none'})")
        if self.agent is not None and self.files is None:
            raise ValueError("`agent` credits `files`; run and stage trajectories keep their writers")
        return self


class StageConfig(Strict):
    """Agents solving the dataset alone, before the main episodes: solo samples that fill a pool."""

    agents: list[str] | None = None
    """Writers that run solo (default: every writer)."""
    samples: int = Field(8, ge=1, le=10_000)
    """Solo samples per problem and agent."""
    limits: Limits | None = None
    """Limits of a solo episode (default: the scenario's)."""


class SubsetConfig(Strict):
    """Problems chosen by their solve rates in a pool (share of an agent's graded trajectories that are correct)."""

    pool: str
    agents: list[str] | None = None
    """Agents whose rates must all lie in the bounds (a shared subset); default: the model under test, i.e.
    the first writer the graph reaches (an individual subset, chosen per model)."""
    min_rate: float = Field(0.0, ge=0, le=1)
    """Lowest solve rate allowed, inclusive (1.0: solved every time, the shared subset and the control)."""
    max_rate: float = Field(1.0, ge=0, le=1)
    """Highest solve rate allowed, inclusive (0.125: solved at most 1 time in 8, the guidability subset)."""
    size: int | None = Field(None, ge=1)
    """Draw this many of the eligible problems (default: all of them)."""
    sample: Literal["uniform", "inverse_rate"] = "uniform"
    """How ``size`` problems are drawn: uniformly, or with weights 1/solve rate (unsolved problems left out)."""
    seed: int | None = None
    """Seed of the draw (default: the scenario's)."""

    @model_validator(mode="after")
    def _bounds(self) -> SubsetConfig:
        if self.min_rate > self.max_rate:
            raise ValueError(f"`min_rate` {self.min_rate} is above `max_rate` {self.max_rate}")
        return self


class Scenario(Strict):
    """A whole scenario file."""

    name: str
    description: str = ""
    seed: int = 0
    samples: int = Field(1, ge=1, le=10_000)
    concurrency: int = Field(8, ge=1, le=100_000)
    dataset: DatasetConfig
    prompt: PromptConfig = PromptConfig()
    engines: dict[str, EngineConfig]
    agents: dict[str, AgentConfig]
    graph: GraphConfig
    limits: Limits = Limits()
    pools: dict[str, PoolConfig] = {}
    stages: dict[str, StageConfig] = {}
    """Solo runs before the main episodes; a stage runs when a pool is filled from it."""
    subsets: dict[str, SubsetConfig] = {}
    """Named problem subsets; with any, the main episodes run on their union, tagged with their names."""
    sweep: dict[str, list[Any]] = {}
    judge: JudgeSettings = JudgeSettings()

    @field_validator("sweep")
    @classmethod
    def _sweep_values(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"sweep `{key}` needs at least one value")
        return value
