# bash completion for cirrus(1).  Commands and options come from `cirrus __complete`, task
# names from the configuration (./.cirrus.yml, or the file given with -f).
_cirrus() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
  local bin=${COMP_WORDS[0]} cmd= file= i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    if [[ -z $cmd && $w != -* ]]; then
      cmd=$w
    elif [[ $w == -f || $w == --file ]]; then
      file=${COMP_WORDS[i + 1]}
    elif [[ $w == --file=* ]]; then
      file=${w#--file=}
    fi
  done
  COMPREPLY=()
  if [[ -z $cmd ]]; then
    if [[ $cur == -* ]]; then
      mapfile -t COMPREPLY < <(compgen -W "$("$bin" __complete flags 2>/dev/null)" -- "$cur")
    else
      mapfile -t COMPREPLY < <(compgen -W "$("$bin" __complete commands 2>/dev/null)" -- "$cur")
    fi
    return
  fi
  case $prev in
    -f | --file | --env-file | --junit)
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return ;;
    -o | --output)
      mapfile -t COMPREPLY < <(compgen -W "auto interactive simple github-actions travis teamcity json" -- "$cur")
      return ;;
    --container-backend)
      mapfile -t COMPREPLY < <(compgen -W "auto docker podman builtin" -- "$cur")
      return ;;
    --pull)
      mapfile -t COMPREPLY < <(compgen -W "missing always never" -- "$cur")
      return ;;
    --container-network)
      mapfile -t COMPREPLY < <(compgen -W "host private none" -- "$cur")
      return ;;
    --format)
      mapfile -t COMPREPLY < <(compgen -W "tree dot" -- "$cur")
      return ;;
    --export-bundle | --artifacts-dir)
      mapfile -t COMPREPLY < <(compgen -d -- "$cur")
      return ;;
    -e | --env | --environment | -p | --parallel | --affected-files | --affected-files-git | \
      --affected-files-git-cached | --dockerfile-image-template | --run-id | \
      --heartbeat-timeout)
      return ;;
  esac
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$("$bin" __complete flags "$cmd" 2>/dev/null)" -- "$cur")
    return
  fi
  case $cmd in
    run | graph)
      # Task filters match a name or alias case-insensitively; names may hold spaces.
      local t lc=${cur,,}
      while IFS= read -r t; do
        [[ ${t,,} == "$lc"* ]] && COMPREPLY+=("$(printf '%q' "$t")")
      done < <("$bin" __complete tasks ${file:+-f "$file"} 2>/dev/null)
      ;;
    help)
      mapfile -t COMPREPLY < <(compgen -W "$("$bin" __complete commands 2>/dev/null)" -- "$cur")
      ;;
  esac
}
complete -F _cirrus cirrus
