"""Request types of the Train tab and the /sdapi/v1 create/train routes, with A1111's field names and defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LatentSampling = Literal["once", "deterministic", "random"]
ClipGradMode = Literal["disabled", "value", "norm"]
HYPERNETWORK_SIZES = (768, 1024, 320, 640, 1280)
WEIGHT_INITS = ("Normal", "KaimingUniform", "KaimingNormal", "XavierUniform", "XavierNormal")


class CreateEmbeddingParams(BaseModel):
    """A1111's `create_embedding(name, num_vectors_per_token, overwrite_old, init_text)`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., max_length=128)
    num_vectors_per_token: int = Field(1, ge=1, le=75)
    overwrite_old: bool = False
    init_text: str = Field("*", max_length=1000)


class CreateHypernetworkParams(BaseModel):
    """A1111's `create_hypernetwork(name, enable_sizes, overwrite_old, layer_structure, activation_func, ...)`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., max_length=128)
    enable_sizes: list[int] = Field(default_factory=lambda: [768, 320, 640, 1280], max_length=16)
    overwrite_old: bool = False
    layer_structure: list[float] | str | None = None  # "1, 2, 1" in the UI; a list through the API
    activation_func: str | None = None
    weight_init: str | None = None
    add_layer_norm: bool = False
    use_dropout: bool = False
    dropout_structure: list[float] | str | None = None


class _TrainCommon(BaseModel):
    """The fields A1111's train_embedding and train_hypernetwork share (`id_task` is accepted and ignored)."""

    model_config = ConfigDict(extra="forbid")

    id_task: str | None = None
    batch_size: int = Field(1, ge=1, le=64)
    gradient_step: int = Field(1, ge=1, le=1000)
    data_root: str = Field("", max_length=4096)
    log_directory: str = Field("textual_inversion", max_length=4096)
    training_width: int = Field(512, ge=64, le=2048, multiple_of=8)
    training_height: int = Field(512, ge=64, le=2048, multiple_of=8)
    varsize: bool = False
    steps: int = Field(100000, ge=1, le=10_000_000)
    clip_grad_mode: ClipGradMode = "disabled"
    clip_grad_value: str = Field("0.1", max_length=1000)
    shuffle_tags: bool = False
    tag_drop_out: float = Field(0.0, ge=0, le=1)
    latent_sampling_method: LatentSampling = "once"
    use_weight: bool = False
    create_image_every: int = Field(500, ge=0)
    template_filename: str = Field("style_filewords.txt", max_length=512)
    template_file: str | None = Field(None, max_length=512)  # older A1111 clients; wins when given
    preview_from_txt2img: bool = False
    preview_prompt: str = Field("", max_length=100_000)
    preview_negative_prompt: str = Field("", max_length=100_000)
    preview_steps: int = Field(20, ge=1, le=150)
    preview_sampler_name: str = "Euler a"
    preview_sampler_index: str | int | None = None  # older A1111 clients: a sampler name or its list index
    preview_cfg_scale: float = Field(7.0, ge=0, le=30)
    preview_seed: int = Field(-1, ge=-1, le=4294967295)
    preview_width: int = Field(512, ge=64, le=2048, multiple_of=8)
    preview_height: int = Field(512, ge=64, le=2048, multiple_of=8)
    seed: int = Field(-1, ge=-1, le=4294967295)  # ours: a fixed seed makes a run repeatable
    force_task_id: str | None = Field(None, max_length=200)


    @model_validator(mode="after")
    def _old_names(self) -> _TrainCommon:
        if self.template_file:
            self.template_filename, self.template_file = self.template_file, None
        return self


class TrainEmbeddingParams(_TrainCommon):
    embedding_name: str = Field(..., max_length=128)
    learn_rate: str = Field("0.005", max_length=1000)
    save_embedding_every: int = Field(500, ge=0)
    save_image_with_stored_embedding: bool = True


class TrainHypernetworkParams(_TrainCommon):
    hypernetwork_name: str = Field(..., max_length=128)
    learn_rate: str = Field("0.00001", max_length=1000)
    save_hypernetwork_every: int = Field(500, ge=0)


class TrainLoraParams(BaseModel):
    """Ours (A1111 needs kohya's scripts for this): a kohya-format LoRA saved to models/Lora."""

    model_config = ConfigDict(extra="forbid")

    lora_name: str = Field(..., max_length=128)
    data_root: str = Field("", max_length=4096)
    log_directory: str = Field("lora", max_length=4096)
    network_dim: int = Field(8, ge=1, le=1024)  # rank
    network_alpha: float = Field(4.0, gt=0, le=1024)
    train_unet: bool = True
    train_text_encoder: bool = True
    unet_lr: str = Field("1e-4", max_length=1000)  # a rate or an A1111 schedule
    text_encoder_lr: str = Field("5e-5", max_length=1000)
    steps: int = Field(1000, ge=1, le=10_000_000)
    batch_size: int = Field(1, ge=1, le=64)
    gradient_step: int = Field(1, ge=1, le=1000)
    resolution: int = Field(512, ge=64, le=2048, multiple_of=8)
    enable_bucket: bool = True
    min_bucket_reso: int = Field(256, ge=64, le=4096, multiple_of=8)
    max_bucket_reso: int = Field(1024, ge=64, le=4096, multiple_of=8)
    caption_extension: str = Field(".txt", pattern=r"^\.[A-Za-z0-9_]{1,16}$")
    repeats: int = Field(1, ge=1, le=1000)
    template_filename: str | None = Field(None, max_length=512)  # None: the caption alone is the prompt
    shuffle_tags: bool = False
    tag_drop_out: float = Field(0.0, ge=0, le=1)
    flip_aug: bool = False
    latent_sampling_method: LatentSampling = "once"
    clip_grad_mode: ClipGradMode = "disabled"
    clip_grad_value: str = Field("1.0", max_length=1000)
    save_every: int = Field(500, ge=0)
    create_image_every: int = Field(500, ge=0)
    preview_prompt: str = Field("", max_length=100_000)
    preview_negative_prompt: str = Field("", max_length=100_000)
    preview_steps: int = Field(20, ge=1, le=150)
    preview_sampler_name: str = "Euler a"
    preview_cfg_scale: float = Field(7.0, ge=0, le=30)
    preview_seed: int = Field(-1, ge=-1, le=4294967295)
    resume: bool = False  # continue from the saved file's `ss_steps`
    overwrite_old: bool = False
    seed: int = Field(-1, ge=-1, le=4294967295)
    force_task_id: str | None = Field(None, max_length=200)
