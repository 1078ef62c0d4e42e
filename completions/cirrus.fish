# fish completion for cirrus(1).  Commands and options come from `cirrus __complete`, task
# names from the configuration (./.cirrus.yml, or the file given with -f).
function __cirrus_cmd
    for t in (commandline -opc)[2..-1]
        if not string match -q -- '-*' $t
            echo $t
            return 0
        end
    end
    return 1
end

function __cirrus_tasks
    set -l tokens (commandline -opc)
    set -l args
    for i in (seq (count $tokens))
        if contains -- $tokens[$i] -f --file; and test $i -lt (count $tokens)
            set args -f $tokens[(math $i + 1)]
        end
    end
    cirrus __complete tasks $args 2>/dev/null
end

function __cirrus_flags
    cirrus __complete flags (__cirrus_cmd) 2>/dev/null
end

complete -c cirrus -f
complete -c cirrus -n 'not __cirrus_cmd' -a '(cirrus __complete commands --describe 2>/dev/null)'
complete -c cirrus -n 'contains -- (__cirrus_cmd) run graph' -a '(__cirrus_tasks)'
complete -c cirrus -n 'test "$(__cirrus_cmd)" = help' -a '(cirrus __complete commands 2>/dev/null)'
complete -c cirrus -n 'string match -q -- "-*" (commandline -ct)' -a '(__cirrus_flags)'
complete -c cirrus -s f -l file -r -F
complete -c cirrus -l env-file -r -F
complete -c cirrus -l junit -r -F
complete -c cirrus -l export-bundle -l artifacts-dir -x -a '(__fish_complete_directories)'
complete -c cirrus -s o -l output -x -a 'auto interactive simple github-actions travis teamcity json'
complete -c cirrus -l container-backend -x -a 'auto docker podman builtin'
complete -c cirrus -l pull -x -a 'missing always never'
complete -c cirrus -l container-network -x -a 'host private none'
complete -c cirrus -l format -x -a 'tree dot'
