{{/* A stock component's image: dict "root" $ "component" NAME "image" (its image values). */}}
{{- define "baton.image" -}}
{{- $i := .root.Values.image -}}
{{- $own := .image | default dict -}}
{{- $repository := $own.repository | default (printf "%s/%s" $i.repositoryPrefix .component) -}}
{{- $tag := $own.tag | default $i.tag | default .root.Chart.AppVersion -}}
{{- if $i.registry -}}
{{- printf "%s/%s:%s" $i.registry $repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}
