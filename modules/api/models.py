"""Request and response bodies of /sdapi/v1 with A1111's field names and shapes (the txt2img request is Txt2ImgParams)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modules.params import Img2ImgParams


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextToImageResponse(BaseModel):
    images: list[str] = Field(default_factory=list, description="base64 images, grid first when one was made")
    parameters: dict[str, Any]
    info: str = Field(description="JSON string of the Processed object (seeds, infotexts...)")


class ImageToImageRequest(Img2ImgParams):
    """A1111's StableDiffusionImg2ImgProcessingAPI: images as base64 strings (decoded before the job runs)."""

    init_images: list[str] = Field(default_factory=list, max_length=8)
    mask: str | None = None
    latent_mask: str | None = None


class ImageToImageResponse(BaseModel):
    images: list[str]
    parameters: dict[str, Any]
    info: str


class PNGInfoRequest(_Strict):
    image: str = Field(description="base64 image, raw or as a data: URI")


class PNGInfoResponse(BaseModel):
    info: str = Field(description="the raw infotext")
    items: dict[str, Any] = Field(description="other metadata of the image")
    parameters: dict[str, Any] = Field(description="the infotext parsed as the paste button does")


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float = Field(ge=0, le=1)
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None
    # Not in A1111: which job this is about and how many wait, so clients can show a queue position.
    id_task: str | None = None
    queue_position: int | None = None
    queue_size: int = 0


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None
    default_rho: float | None
    need_inner_model: bool | None


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class LatentUpscalerModeItem(BaseModel):
    name: str


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None = None


class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class HypernetworkItem(BaseModel):
    name: str
    path: str | None


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: str | None = None


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None
    negative_prompt: str | None


class EmbeddingItem(BaseModel):
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    shape: int
    vectors: int


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem]
    skipped: dict[str, Any]


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class MemoryResponse(BaseModel):
    ram: dict[str, Any]
    cuda: dict[str, Any]


class ScriptsList(BaseModel):
    txt2img: list[str]
    img2img: list[str]


class ScriptArg(BaseModel):
    label: str | None = None
    value: Any = None
    minimum: Any = None
    maximum: Any = None
    step: Any = None
    choices: list[Any] | None = None


class ScriptInfo(BaseModel):
    name: str | None
    is_alwayson: bool
    is_img2img: bool
    args: list[ScriptArg]


class ExtensionItem(BaseModel):
    name: str
    remote: str
    branch: str
    commit_hash: str
    version: str
    commit_date: int | str
    enabled: bool


class InterruptResponse(BaseModel):
    """Not in A1111 (it returns nothing): which job was told to stop, if any."""

    id_task: str | None = None


# A1111 class names that extensions import or subclass (modules/api/models.py there).
from modules.params import Txt2ImgParams as StableDiffusionTxt2ImgProcessingAPI  # noqa: E402,F401

StableDiffusionImg2ImgProcessingAPI = ImageToImageRequest  # A1111's name; extensions subclass it
