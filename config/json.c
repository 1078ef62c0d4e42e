/* config/json.c - the resolved model as JSON (`cirrus validate --json`).
 *
 * One array of task objects, sorted by id.  Keys are stable and documented in
 * config/README.md; absent optional values are omitted rather than null, except
 * `container`, which is null for tasks without one. */
#include "internal.h"

static json_t *
strv_json(const struct ci_strv *sv)
{
  json_t *a = json_array();
  for (size_t i = 0; i < sv->n; i++)
    json_array_append_new(a, json_string(sv->v[i]));
  return a;
}

static json_t *
env_json(const struct cfg_env *env)
{
  json_t *o = json_object();
  for (size_t i = 0; i < env->n; i++)
    json_object_set_new(o, env->v[i].key, json_string(env->v[i].value));
  return o;
}

static void
set_str(json_t *o, const char *key, const char *v)
{
  if (v)
    json_object_set_new(o, key, json_string(v));
}

const char *
cfg_instr_kind_name(enum cfg_instr_kind kind)
{
  static const char *const names[] = {"script", "background_script", "cache",
                                      "artifacts", "file", "upload_cache"};
  return (unsigned)kind < CI_ARRAY_SIZE(names) ? names[kind] : "unknown";
}

const char *
cfg_when_name(enum cfg_when when)
{
  static const char *const names[] = {"on_success", "on_failure", "always", "on_timeout"};
  return (unsigned)when < CI_ARRAY_SIZE(names) ? names[when] : "unknown";
}

static const char *
instance_name(enum cfg_instance i)
{
  switch (i) {
  case CFG_INSTANCE_CONTAINER:
    return "container";
  case CFG_INSTANCE_PIPE:
    return "pipe";
  case CFG_INSTANCE_PREBUILT:
    return "prebuilt";
  case CFG_INSTANCE_UNSUPPORTED:
    return "unsupported";
  default:
    return "none";
  }
}

static json_t *
instr_json(const struct cfg_instr *i)
{
  json_t *o = json_object();
  json_object_set_new(o, "kind", json_string(cfg_instr_kind_name(i->kind)));
  json_object_set_new(o, "name", json_string(i->name));
  json_object_set_new(o, "when", json_string(cfg_when_name(i->when)));
  if (i->pipe_step >= 0)
    json_object_set_new(o, "pipe_step", json_integer(i->pipe_step));
  switch (i->kind) {
  case CFG_INSTR_SCRIPT:
  case CFG_INSTR_BACKGROUND_SCRIPT:
    json_object_set_new(o, "script", strv_json(&i->script));
    break;
  case CFG_INSTR_CACHE:
    json_object_set_new(o, "folders", strv_json(&i->folders));
    if (i->fingerprint_script.n)
      json_object_set_new(o, "fingerprint_script", strv_json(&i->fingerprint_script));
    set_str(o, "fingerprint_key", i->fingerprint_key);
    if (i->populate_script.n)
      json_object_set_new(o, "populate_script", strv_json(&i->populate_script));
    json_object_set_new(o, "reupload_on_changes", json_boolean(i->reupload_on_changes));
    json_object_set_new(o, "optimistically_restore_on_miss",
                        json_boolean(i->optimistically_restore_on_miss));
    break;
  case CFG_INSTR_ARTIFACTS:
    json_object_set_new(o, "paths", strv_json(&i->paths));
    set_str(o, "type", i->type);
    set_str(o, "format", i->format);
    break;
  case CFG_INSTR_FILE:
    set_str(o, "path", i->path);
    set_str(o, "variable_name", i->variable_name);
    set_str(o, "from_contents", i->from_contents);
    break;
  case CFG_INSTR_UPLOAD_CACHE:
    set_str(o, "cache_name", i->cache_name);
    break;
  }
  json_object_set_new(o, "line", json_integer(i->pos.line));
  json_object_set_new(o, "column", json_integer(i->pos.col));
  return o;
}

static json_t *
container_json(const struct cfg_task *t)
{
  const struct cfg_container *ct = &t->container;
  json_t *o = json_object();
  set_str(o, "image", ct->image);
  if (ct->dockerfile) {
    json_object_set_new(o, "dockerfile", json_string(ct->dockerfile));
    json_object_set_new(o, "docker_arguments", env_json(&ct->docker_arguments));
    set_str(o, "dockerfile_hash", ct->dockerfile_hash);
  }
  set_str(o, "arch", ct->arch);
  json_object_set_new(o, "cpu", json_real(ct->cpu));
  json_object_set_new(o, "memory_mb", json_integer(ct->memory_mb));
  json_t *acs = json_array();
  for (size_t i = 0; i < ct->nadditional; i++) {
    const struct cfg_additional_container *ac = &ct->additional[i];
    json_t *a = json_object();
    json_object_set_new(a, "name", json_string(ac->name));
    set_str(a, "image", ac->image);
    json_t *ports = json_array();
    for (size_t p = 0; p < ac->nports; p++) {
      json_t *po = json_object();
      json_object_set_new(po, "container", json_integer(ac->ports[p].container));
      if (ac->ports[p].host)
        json_object_set_new(po, "host", json_integer(ac->ports[p].host));
      json_array_append_new(ports, po);
    }
    json_object_set_new(a, "ports", ports);
    json_object_set_new(a, "env", env_json(&ac->env));
    json_object_set_new(a, "command", strv_json(&ac->command));
    if (ac->readiness_command.n)
      json_object_set_new(a, "readiness_command", strv_json(&ac->readiness_command));
    json_object_set_new(a, "cpu", json_real(ac->cpu));
    json_object_set_new(a, "memory_mb", json_integer(ac->memory_mb));
    json_object_set_new(a, "privileged", json_boolean(ac->privileged));
    json_array_append_new(acs, a);
  }
  json_object_set_new(o, "additional_containers", acs);
  return o;
}

json_t *
cfg_task_to_json(const struct cfg_task *t)
{
  json_t *o = json_object();
  json_object_set_new(o, "id", json_integer(t->id));
  json_object_set_new(o, "name", json_string(t->name));
  json_t *aliases = json_array();
  if (t->alias)
    json_array_append_new(aliases, json_string(t->alias));
  json_object_set_new(o, "aliases", aliases);
  json_object_set_new(o, "labels", strv_json(&t->labels));
  json_t *deps = json_array();
  for (size_t i = 0; i < t->ndepends_on; i++)
    json_array_append_new(deps, json_integer(t->depends_on[i]));
  json_object_set_new(o, "depends_on", deps);
  json_object_set_new(o, "skip", json_boolean(t->skip));
  json_object_set_new(o, "allow_failures", json_boolean(t->allow_failures));
  json_object_set_new(o, "timeout_seconds", json_integer(t->timeout_seconds));
  set_str(o, "only_if", t->only_if);
  json_object_set_new(o, "instance", json_string(instance_name(t->instance)));
  set_str(o, "instance_type", t->instance_key);
  if (t->instance == CFG_INSTANCE_CONTAINER || t->instance == CFG_INSTANCE_PREBUILT ||
      t->instance == CFG_INSTANCE_PIPE)
    json_object_set_new(o, "container", container_json(t));
  else
    json_object_set_new(o, "container", json_null());
  if (t->instance == CFG_INSTANCE_PIPE) {
    json_t *steps = json_array();
    for (size_t i = 0; i < t->npipe_steps; i++) {
      json_t *s = json_object();
      json_object_set_new(s, "image", json_string(t->pipe_steps[i].image));
      json_array_append_new(steps, s);
    }
    json_object_set_new(o, "pipe_steps", steps);
  }
  json_object_set_new(o, "env", env_json(&t->env));
  json_t *instrs = json_array();
  for (size_t i = 0; i < t->ninstrs; i++)
    json_array_append_new(instrs, instr_json(&t->instrs[i]));
  json_object_set_new(o, "instructions", instrs);
  json_object_set_new(o, "line", json_integer(t->pos.line));
  json_object_set_new(o, "column", json_integer(t->pos.col));
  return o;
}

json_t *
cfg_file_to_json(const struct cfg_file *f)
{
  json_t *a = json_array();
  for (size_t i = 0; i < f->ntasks; i++)
    json_array_append_new(a, cfg_task_to_json(&f->tasks[i]));
  return a;
}
