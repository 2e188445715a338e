"""The table of settings with A1111's keys, defaults and Settings sections."""

from __future__ import annotations

from modules.options import OptionInfo, options_section

# Keys that name folders or file patterns: refused when --hide-ui-dir-config is given, and never
# settable through the API (they would let a client write files anywhere).
RESTRICTED_OPTS = {
    "samples_filename_pattern", "directories_filename_pattern", "outdir_samples", "outdir_txt2img_samples",
    "outdir_img2img_samples", "outdir_extras_samples", "outdir_grids", "outdir_txt2img_grids",
    "outdir_img2img_grids", "outdir_save", "outdir_init_images", "temp_dir", "clean_temp_dir_at_start",
}

SAMPLES_FORMATS = ("png", "jpg", "jpeg", "webp", "avif")


def _face_restorer_names() -> list[str]:
    """Ours and those extensions appended to `face_restoration.face_restorers` (read when the setting is used)."""
    from modules import face_restoration

    names = [r.name() for r in face_restoration.face_restorers]
    return names or ["CodeFormer", "GFPGAN"]


GRADIO_THEMES = ("Default", "Base", "Soft", "Monochrome", "Glass", "Citrus", "Ocean", "Origin")


def _postprocessing_names() -> list[str]:
    """The Extras operations, built-in and from extensions (asked when the Settings page is built)."""
    from modules.scripts_postprocessing import ScriptPostprocessingRunner

    return [s.name for s in ScriptPostprocessingRunner.with_installed_scripts().scripts if s.name]


def _o(default, label, component=None, **kw) -> OptionInfo:
    return OptionInfo(default=default, label=label, component=component, **kw)


def build_options_table() -> dict[str, OptionInfo]:
    """A fresh table (tests build their own Options from it; extensions add to the live one)."""
    t: dict[str, OptionInfo] = {}
    t.update(options_section(("saving-images", "Saving images/grids"), {
        "samples_save": _o(True, "Always save all generated images", "checkbox"),
        "samples_format": _o("png", "File format for images", "dropdown", choices=SAMPLES_FORMATS),
        "samples_filename_pattern": _o("", "Images filename pattern", "textbox"),
        "save_images_add_number": _o(True, "Add number to filename when saving", "checkbox"),
        "grid_save": _o(True, "Always save all generated image grids", "checkbox"),
        "grid_format": _o("png", "File format for grids", "dropdown", choices=SAMPLES_FORMATS),
        "grid_extended_filename": _o(False, "Add extended info (seed, prompt) to filename when saving grid"),
        "grid_only_if_multiple": _o(True, "Do not save grids consisting of one picture"),
        "grid_prevent_empty_spots": _o(False, "Prevent empty spots in grid (when set to autodetect)"),
        "n_rows": _o(-1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size", "slider",
                     component_args={"minimum": -1, "maximum": 16, "step": 1}),
        "jpeg_quality": _o(80, "Quality for saved jpeg and avif images", "slider",
                           component_args={"minimum": 1, "maximum": 100, "step": 1}),
        "webp_lossless": _o(False, "Use lossless compression for webp images"),
        "export_for_4chan": _o(True, "Save copy of large images as JPG"),
        "img_downscale_threshold": _o(4.0, "File size limit for the above option, MB"),
        "target_side_length": _o(4000.0, "Width/height limit for the above option, in pixels"),
        "save_txt": _o(False, "Create a text file with infotext next to every image"),
        "img_max_size_mp": _o(200, "Maximum grid size in megapixels (X/Y/Z plot and other script grids)",
                              "number"),
        "save_images_before_highres_fix": _o(False, "Save a copy of image before applying highres fix."),
        "save_write_log_csv": _o(True, "Write log.csv when saving images using 'Save' button"),
        "save_incomplete_images": _o(False, "Save incomplete images"),
        "notification_audio": _o(True, "Play notification sound after image generation (notification.mp3 in the "
                                 "data folder)"),
        "notification_volume": _o(100, "Notification sound volume", "slider",
                                  component_args={"minimum": 0, "maximum": 100, "step": 1}),
    }))
    t.update(options_section(("saving-paths", "Paths for saving"), {
        "outdir_samples": _o("", "Output directory for images; if empty, defaults to three directories below"),
        "outdir_txt2img_samples": _o("outputs/txt2img-images", "Output directory for txt2img images"),
        "outdir_img2img_samples": _o("outputs/img2img-images", "Output directory for img2img images"),
        "outdir_extras_samples": _o("outputs/extras-images", "Output directory for images from extras tab"),
        "outdir_grids": _o("", "Output directory for grids; if empty, defaults to two directories below"),
        "outdir_txt2img_grids": _o("outputs/txt2img-grids", "Output directory for txt2img grids"),
        "outdir_img2img_grids": _o("outputs/img2img-grids", "Output directory for img2img grids"),
        "outdir_save": _o("log/images", "Directory for saving images using the Save button"),
        "outdir_init_images": _o("outputs/init-images", "Directory for saving init images when using img2img"),
    }))
    t.update(options_section(("saving-to-dirs", "Saving to a directory"), {
        "save_to_dirs": _o(True, "Save images to a subdirectory"),
        "grid_save_to_dirs": _o(True, "Save grids to a subdirectory"),
        "use_save_to_dirs_for_ui": _o(False, "When using \"Save\" button, save images to a subdirectory"),
        "directories_filename_pattern": _o("[date]", "Directory name pattern"),
        "directories_max_prompt_words": _o(8, "Max prompt words for [prompt_words] pattern", "slider",
                                           component_args={"minimum": 1, "maximum": 20, "step": 1}),
    }))
    t.update(options_section(("sd", "Stable Diffusion"), {
        "sd_model_checkpoint": _o("", "Stable Diffusion checkpoint", "dropdown"),
        "sd_checkpoints_limit": _o(1, "Maximum number of checkpoints loaded at the same time", "slider",
                                   component_args={"minimum": 1, "maximum": 10, "step": 1}),
        "sd_checkpoints_keep_in_cpu": _o(True, "Only keep one model on device"),
        "sd_checkpoint_hash": _o("", "SHA256 hash of the current checkpoint", do_not_save=False),
        "emphasis": _o("Original", "Emphasis mode", "radio", choices=("None", "Ignore", "Original", "No norm")),
        "enable_batch_seeds": _o(True, "Make K-diffusion samplers produce same images in a batch as for a single image"),
        "comma_padding_backtrack": _o(20, "Prompt word wrap length limit", "slider",
                                      component_args={"minimum": 0, "maximum": 74, "step": 1}),
        "sdxl_clip_l_skip": _o(False, "Clip skip SDXL"),
        "CLIP_stop_at_last_layers": _o(1, "Clip skip", "slider",
                                       component_args={"minimum": 1, "maximum": 12, "step": 1}, infotext="Clip skip"),
        "upcast_attn": _o(False, "Upcast cross attention layer to float32"),
        "randn_source": _o("GPU", "Random number generator source.", "radio", choices=("GPU", "CPU", "NV"),
                           infotext="RNG"),
        "tiling": _o(False, "Tiling", infotext="Tiling"),
        "refiner_switch_by_sample_steps": _o(False, "Switch to refiner by sampling steps instead of model timesteps",
                                             infotext="Refiner switch by sampling steps"),
        "img2img_extra_noise": _o(0.0, "Extra noise multiplier for img2img and hires fix", "slider",
                                  component_args={"minimum": 0.0, "maximum": 1.0, "step": 0.01},
                                  infotext="Extra noise"),
        "img2img_fix_steps": _o(False, "With img2img, do exactly the amount of steps the slider specifies"),
        "hires_fix_refiner_pass": _o("second pass", "Hires fix: which pass to enable refiner for", "radio",
                                     choices=("first pass", "second pass", "both passes")),
        "enable_prompt_comments": _o(True, "Enable comments"),
        "sd2_parameterization": _o("Automatic", "SD2 parameterization (Automatic tests the model as A1111 does)",
                                   "radio", choices=("Automatic", "epsilon", "v_prediction")),
        "cpu_dtype": _o("bfloat16", "Model precision on CPU", "radio", choices=("bfloat16", "float32")),
        "nai_curly_emphasis": _o(False, "Read NovelAI-style {x} as attention x1.05"),
    }))
    t.update(options_section(("sdxl", "Stable Diffusion XL"), {
        "sdxl_crop_top": _o(0, "crop top coordinate"),
        "sdxl_crop_left": _o(0, "crop left coordinate"),
        "sdxl_refiner_low_aesthetic_score": _o(2.5, "SDXL low aesthetic score"),
        "sdxl_refiner_high_aesthetic_score": _o(6.0, "SDXL high aesthetic score"),
    }))
    t.update(options_section(("vae", "VAE"), {
        "sd_vae": _o("Automatic", "SD VAE", "dropdown", infotext="VAE"),
        "sd_vae_overrides_per_model_preferences": _o(True, "Selected VAE overrides per-model preferences"),
        "auto_vae_precision": _o(True, "Automatically revert VAE to 32-bit floats on NaN"),
    }))
    t.update(options_section(("sampler-params", "Sampler parameters"), {
        "hide_samplers": _o([], "Hide samplers in user interface", "dropdown"),
        "eta_ddim": _o(0.0, "Eta for DDIM", infotext="Eta DDIM"),
        "eta_ancestral": _o(1.0, "Eta for k-diffusion samplers", infotext="Eta"),
        "ddim_discretize": _o("uniform", "img2img DDIM discretize", "radio", choices=("uniform", "quad")),
        "s_churn": _o(0.0, "sigma churn"),
        "s_tmin": _o(0.0, "sigma tmin"),
        "s_tmax": _o(0.0, "sigma tmax"),
        "s_noise": _o(1.0, "sigma noise"),
        "sigma_min": _o(0.0, "sigma min"),
        "sigma_max": _o(0.0, "sigma max"),
        "rho": _o(0.0, "rho"),
        "eta_noise_seed_delta": _o(0, "Eta noise seed delta", infotext="ENSD"),
        "always_discard_next_to_last_sigma": _o(False, "Always discard next-to-last sigma"),
        "sgm_noise_multiplier": _o(False, "SGM noise multiplier"),
        "uni_pc_variant": _o("bh1", "UniPC variant", "radio", choices=("bh1", "bh2", "vary_coeff")),
        "uni_pc_skip_type": _o("time_uniform", "UniPC skip type", "radio",
                               choices=("time_uniform", "time_quadratic", "logSNR")),
        "uni_pc_order": _o(3, "UniPC order"),
        "uni_pc_lower_order_final": _o(True, "UniPC lower order final"),
        "beta_dist_alpha": _o(0.6, "Beta scheduler - alpha"),
        "beta_dist_beta": _o(0.6, "Beta scheduler - beta"),
    }))
    t.update(options_section(("infotext", "Infotext"), {
        "enable_pnginfo": _o(True, "Write infotext to metadata of the generated image"),
        "add_model_name_to_info": _o(True, "Add model name to infotext"),
        "add_model_hash_to_info": _o(True, "Add model hash to infotext"),
        "add_vae_name_to_info": _o(True, "Add VAE name to infotext"),
        "add_vae_hash_to_info": _o(True, "Add VAE hash to infotext"),
        "add_version_to_infotext": _o(True, "Add program version to infotext"),
        "disable_weights_auto_swap": _o(True, "Disregard checkpoint information from pasted infotext"),
    }))
    t.update(options_section(("ui", "Live previews"), {
        "live_previews_enable": _o(True, "Show live previews of the created image"),
        "show_progress_every_n_steps": _o(10, "Live preview display period", "slider",
                                          component_args={"minimum": -1, "maximum": 32, "step": 1}),
        "show_progress_type": _o("TAESD", "Live preview method (TAESD falls back to Approx cheap without its "
                                 "weights in models/VAE-approx)", "radio", choices=("Full", "Approx cheap", "TAESD")),
    }))
    t.update(options_section(("ui", "User interface"), {
        "quicksettings_list": _o(["sd_model_checkpoint"], "Quicksettings list", "dropdown"),
        "gradio_theme": _o("Default", "Gradio theme (Gradio's built-in themes; hub themes need a download, which "
                           "this webui never does)", "dropdown", choices=GRADIO_THEMES, requires_restart=True),
        "hires_fix_show_sampler": _o(False, "Hires fix: show hires checkpoint and sampler selection"),
        "hires_fix_show_prompts": _o(False, "Hires fix: show hires prompt and negative prompt"),
        "sd_checkpoint_dropdown_use_short": _o(False, "Checkpoint dropdown: use filenames without paths"),
        "send_seed": _o(True, "Send seed when sending prompt or image to other interface"),
        "send_size": _o(True, "Send size when sending prompt or image to another interface"),
    }))
    t.update(options_section(("ui_prompt_editing", "Prompt editing"), {
        "keyedit_precision_attention": _o(0.1, "Precision for (attention:1.1) when editing the prompt with "
                                          "Ctrl+up/down", "slider",
                                          component_args={"minimum": 0.01, "maximum": 0.2, "step": 0.001}),
        "keyedit_precision_extra": _o(0.05, "Precision for <extra networks:0.9> when editing the prompt with "
                                      "Ctrl+up/down", "slider",
                                      component_args={"minimum": 0.01, "maximum": 0.2, "step": 0.001}),
        "keyedit_delimiters": _o(".,\\/!?%^*;:{}=`~() ", "Word delimiters when editing the prompt with Ctrl+up/down"),
        "keyedit_delimiters_whitespace": _o(["Tab", "Carriage Return", "Line Feed"], "Ctrl+up/down whitespace "
                                            "delimiters", "checkboxgroup", choices=("Tab", "Carriage Return",
                                                                                    "Line Feed")),
        "keyedit_move": _o(True, "Alt+left/right moves prompt elements"),
    }))
    t.update(options_section(("extra_networks", "Extra Networks"), {
        "extra_networks_show_hidden_directories": _o(True, "Show hidden directories"),
        "extra_networks_default_multiplier": _o(1.0, "Default multiplier for extra networks", "slider",
                                                component_args={"minimum": 0.0, "maximum": 2.0, "step": 0.01}),
        "extra_networks_card_width": _o(0, "Card width for Extra Networks"),
        "extra_networks_card_height": _o(0, "Card height for Extra Networks"),
        "extra_networks_card_order_field": _o("Path", "Default order field for Extra Networks cards", "dropdown",
                                              choices=("Path", "Name", "Date Created", "Date Modified")),
        "extra_networks_card_order": _o("Ascending", "Default order for Extra Networks cards", "dropdown",
                                        choices=("Ascending", "Descending")),
        "sd_lora": _o("None", "Add network to prompt", "dropdown"),
        "lora_preferred_name": _o("Alias from file", "When adding to prompt, refer to Lora by", "radio",
                                  choices=("Alias from file", "Filename")),
        "lora_add_hashes_to_infotext": _o(True, "Add Lora hashes to infotext"),
        "lora_show_all": _o(False, "Always show all networks on the Lora page"),
        "lora_hide_unknown_for_versions": _o([], "Hide networks of unknown versions for model versions", "dropdown",
                                             choices=("SD1", "SD2", "SDXL")),
        "lora_in_memory_limit": _o(0, "Number of Lora networks to keep cached in memory"),
        "sd_hypernetwork": _o("None", "Add hypernetwork to prompt", "dropdown"),
    }))
    t.update(options_section(("img2img", "img2img"), {
        "inpainting_mask_weight": _o(1.0, "Inpainting conditioning mask strength", "slider",
                                     component_args={"minimum": 0.0, "maximum": 1.0, "step": 0.01},
                                     infotext="Conditional mask weight"),
        "initial_noise_multiplier": _o(1.0, "Noise multiplier for img2img", "slider",
                                       component_args={"minimum": 0.0, "maximum": 1.5, "step": 0.001},
                                       infotext="Noise multiplier"),
        "img2img_color_correction": _o(False, "Apply color correction to img2img results to match original colors."),
        "img2img_background_color": _o("#ffffff", "With img2img, fill transparent parts of the input image with "
                                       "this color.", "color"),
        "img2img_editor_height": _o(720, "Height of the image editor", "slider",
                                    component_args={"minimum": 80, "maximum": 1600, "step": 1}),
        "img2img_sketch_default_brush_color": _o("#ffffff", "Sketch initial brush color", "color"),
        "img2img_inpaint_mask_brush_color": _o("#ffffff", "Inpaint mask brush color", "color"),
        "img2img_inpaint_sketch_default_brush_color": _o("#ffffff", "Inpaint sketch initial brush color", "color"),
        "return_mask": _o(False, "For inpainting, include the greyscale mask in results for web"),
        "return_mask_composite": _o(False, "For inpainting, include masked composite in results for web"),
        "save_init_img": _o(False, "Save init images when using img2img"),
    }))
    t.update(options_section(("training", "Training"), {
        "save_training_settings_to_txt": _o(True, "Save textual inversion and hypernet settings to a text file "
                                                  "whenever training starts."),
        "dataset_filename_word_regex": _o("", "Filename word regex"),
        "dataset_filename_join_string": _o(" ", "Filename join string"),
        "training_image_repeats_per_epoch": _o(1, "Number of repeats for a single input image per epoch; used "
                                                  "only for displaying epoch number", "number"),
        "training_write_csv_every": _o(500, "Save a csv containing the loss to log directory every N steps, "
                                            "0 to disable", "number"),
    }))
    t.update(options_section(("saving-images", "Saving images/grids"), {
        "use_original_name_batch": _o(True, "Use original name for output filename during batch process in extras tab"),
        "save_images_before_face_restoration": _o(False, "Save a copy of image before doing face restoration."),
    }))
    t.update(options_section(("upscaling", "Upscaling"), {
        "ESRGAN_tile": _o(192, "Tile size for ESRGAN upscalers.", "slider",
                          component_args={"minimum": 0, "maximum": 512, "step": 16}),
        "ESRGAN_tile_overlap": _o(8, "Tile overlap for ESRGAN upscalers.", "slider",
                                  component_args={"minimum": 0, "maximum": 48, "step": 1}),
        "DAT_tile": _o(192, "Tile size for DAT upscalers.", "slider",
                       component_args={"minimum": 0, "maximum": 512, "step": 16}),
        "DAT_tile_overlap": _o(8, "Tile overlap for DAT upscalers.", "slider",
                               component_args={"minimum": 0, "maximum": 48, "step": 1}),
        "SWIN_tile": _o(192, "Tile size for all SwinIR.", "slider",
                        component_args={"minimum": 16, "maximum": 512, "step": 16}),
        "SWIN_tile_overlap": _o(8, "Tile overlap for SwinIR.", "slider",
                                component_args={"minimum": 0, "maximum": 48, "step": 1}),
        "SCUNET_tile": _o(256, "Tile size for SCUNET upscalers.", "slider",
                          component_args={"minimum": 0, "maximum": 512, "step": 16}),
        "SCUNET_tile_overlap": _o(8, "Tile overlap for SCUNET upscalers.", "slider",
                                  component_args={"minimum": 0, "maximum": 64, "step": 1}),
        "upscaler_for_img2img": _o("None", "Upscaler for img2img", "dropdown"),
        "set_scale_by_when_changing_upscaler": _o(False, "Automatically set the Scale by factor based on the "
                                                         "name of the selected Upscaler."),
        "enable_upscale_progressbar": _o(True, "Show a progress bar in the console for tiled upscaling."),
    }))
    t.update(options_section(("face-restoration", "Face restoration"), {
        "face_restoration": _o(False, "Restore faces", infotext="Face restoration"),
        "face_restoration_model": _o("CodeFormer", "Face restoration model", "radio",
                                     choices=_face_restorer_names),
        "code_former_weight": _o(0.5, "CodeFormer weight (0 = maximum effect; 1 = minimum effect)", "slider",
                                 component_args={"minimum": 0.0, "maximum": 1.0, "step": 0.01}),
        "face_restoration_unload": _o(False, "Move face restoration model from VRAM into RAM after processing"),
    }))
    t.update(options_section(("postprocessing", "Postprocessing"), {
        "postprocessing_enable_in_main_ui": _o([], "Enable postprocessing operations in txt2img and img2img tabs",
                                               "dropdown", choices=_postprocessing_names, requires_restart=True),
        "postprocessing_disable_in_extras": _o([], "Disable postprocessing operations in extras tab", "dropdown",
                                               choices=_postprocessing_names, requires_restart=True),
        "postprocessing_operation_order": _o([], "Postprocessing operation order", "dropdown",
                                             choices=_postprocessing_names, requires_restart=True),
        "upscaling_max_images_in_cache": _o(5, "Maximum number of images in upscaling cache", "slider",
                                            component_args={"minimum": 0, "maximum": 10, "step": 1}),
        "postprocessing_existing_caption_action": _o("Ignore", "Action for existing captions", "radio",
                                                     choices=("Ignore", "Keep", "Prepend", "Append")),
    }))
    t.update(options_section(("system", "System"), {
        "auto_launch_browser": _o("Local", "Automatically open webui in browser on startup", "radio",
                                  choices=("Disable", "Local", "Remote")),
        "list_hidden_files": _o(True, "Load models/files in hidden directories"),
        "disable_mmap_load_safetensors": _o(False, "Disable memmapping for loading .safetensors files."),
    }))
    for key, info in a1111_extension_keys().items():
        t.setdefault(key, info)  # a section above that defines the key for real wins
    for key in RESTRICTED_OPTS:
        if key in t:
            t[key].restrict_api = True
    return t


def a1111_extension_keys() -> dict[str, OptionInfo]:
    """Built-in keys that surveyed extensions read (extension-surface.md, section 2), with A1111 1.10's defaults
    and sections. Some only matter to features this webui does not have (deepbooru, CLIP interrogate); they
    exist so that `opts.<key>` reads what it reads in A1111."""
    t: dict[str, OptionInfo] = {}
    t.update(options_section(("saving-images", "Saving images/grids"), {
        "font": _o("", "Font for image grids that have text"),
        "grid_text_active_color": _o("#000000", "Text color for image grids", "color"),
        "grid_text_inactive_color": _o("#999999", "Inactive text color for image grids", "color"),
        "grid_background_color": _o("#ffffff", "Background color for image grids", "color"),
    }))
    t.update(options_section(("saving-paths", "Paths for saving"), {
        "temp_dir": _o("", "Directory for temporary images; leave empty for default"),
        "clean_temp_dir_at_start": _o(False, "Cleanup non-default temporary directory when starting webui"),
    }))
    t.update(options_section(("sd", "Stable Diffusion"), {
        "sd_checkpoint_cache": _o(0, "Checkpoints to cache in RAM (obsolete; set to 0 and use the two settings "
                                     "above instead)", "slider",
                                  component_args={"minimum": 0, "maximum": 10, "step": 1}),
        "img2img_batch_show_results_limit": _o(32, "Show the first N batch img2img results in UI", "slider",
                                               component_args={"minimum": -1, "maximum": 1000, "step": 1}),
    }))
    t.update(options_section(("vae", "VAE"), {
        "sd_vae_encode_method": _o("Full", "VAE type for encode", "radio", choices=("Full", "TAESD")),
        "sd_vae_decode_method": _o("Full", "VAE type for decode", "radio", choices=("Full", "TAESD")),
    }))
    t.update(options_section(("optimizations", "Optimizations"), {
        "batch_cond_uncond": _o(True, "Batch cond/uncond together when sampling"),
    }))
    t.update(options_section(("interrogate", "Interrogate"), {
        "interrogate_keep_models_in_memory": _o(False, "Keep models in VRAM"),
        "interrogate_clip_max_length": _o(48, "CLIP: maximum description length", "slider",
                                          component_args={"minimum": 1, "maximum": 256, "step": 1}),
        "interrogate_clip_min_length": _o(24, "CLIP: minimum description length", "slider",
                                          component_args={"minimum": 1, "maximum": 128, "step": 1}),
        "interrogate_deepbooru_score_threshold": _o(0.5, "deepbooru: score threshold", "slider",
                                                    component_args={"minimum": 0, "maximum": 1, "step": 0.01}),
        "deepbooru_sort_alpha": _o(True, "deepbooru: sort tags alphabetically"),
        "deepbooru_use_spaces": _o(True, "deepbooru: use spaces in tags"),
        "deepbooru_escape": _o(True, "deepbooru: escape (\\) brackets"),
    }))
    t.update(options_section(("ui", "User interface"), {
        "compact_prompt_box": _o(False, "Compact prompt layout"),
        "return_grid": _o(True, "Show grid in gallery"),
    }))
    t.update(options_section(("extra_networks", "Extra Networks"), {
        "lora_functional": _o(False, "Lora/Networks: use old method that takes longer when you have multiple Loras "
                                     "active and produces same results as kohya-ss/sd-webui-additional-networks "
                                     "extension"),
        "lora_bundled_ti_to_infotext": _o(True, "Add Lora name as TI hashes for bundled Textual Inversion"),
        "lora_not_found_warning_console": _o(False, "Lora not found warning in console"),
        "lora_not_found_gradio_warning": _o(False, "Lora not found warning popup in webui"),
    }))
    t.update(options_section(("hypertile", "Hypertile"), {
        "hypertile_enable_unet": _o(False, "Enable Hypertile U-Net"),
        "hypertile_enable_unet_secondpass": _o(False, "Enable Hypertile U-Net for hires fix second pass"),
    }))
    return t
